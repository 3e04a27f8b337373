"""applications: the MACO paper's other uses of feature visualization, as commands and pictures.

- ``concepts_cli``: ``maco-study concepts`` (CRAFT concepts of a class, each visualized with MACO);
- ``invert_cli``: ``maco-study invert`` (feature inversion);
- ``figures``: matplotlib figures laid out like the paper's Figure 6;
- ``gallery``: ``maco-study gallery``, one static HTML page over any folder of outputs or a stimuli bundle.

It builds on ``maco`` (the library) and may import ``stimuli.manifest`` (to open
bundles) and matplotlib, which ``maco`` itself never does.
"""
