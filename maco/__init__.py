"""maco: feature visualization by Magnitude Constrained Optimization (Fel et al., 2023).

One small module per concern, as in Lucent:
- ``color``: ImageNet colour decorrelation;
- ``spectra``: the fixed magnitude spectrum (from a file, a folder, the
  published ImageNet spectrum, or the analytic offline default);
- ``parameterizations``: MACO phase-only, Olah et al.'s Fourier, pixel images;
- ``transforms``: MACO crops and noise, Lucid's standard transforms;
- ``objectives``: composable objectives resolved through forward hooks;
- ``optimize``: the optimisation loops (``maco``, ``olah``, ``pixel``);
- ``transparency``: rendering of MACO's transparency map;
- ``models``: timm model loading; ``images``: tensor <-> PIL helpers, contrast stretch;
- ``toy``: small classifiers trained in seconds, for tests and benchmarks.
"""
