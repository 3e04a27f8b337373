"""study_protocol: the study's analysis decisions as plain values, importable by every package.

Dependency-free (the standard library only), so the study server (which may not import
analysis) and the analysis (which never imports flask) read the same defaults from here.
"""
