"""The MACO paper's benchmark for feature visualizations (section 4, Tables 1-3).

- ``settings``: the protocol's constants (classifiers, FID model and crop);
- ``variants``: the methods and the Table 3 ablation, and their generation;
- ``natural``: the natural images of each class (ImageFolder or CSV);
- ``metrics``: plausibility (Deep-KNN), FID (torchmetrics), transferability, logits;
- ``run``: scoring every visualization of every network;
- ``report``: CSV, markdown tables and the contact sheet; ``cli``: the command.
"""
