"""stimuli: the study config, the stimulus build and the bundle it writes (docs/stimuli.md, docs/architecture.md)."""
