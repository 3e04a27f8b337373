"""The study's defaults as plain values: its conditions and its networks.

stimuli's config (and examples/study.toml), the bundle schema, the analysis and the demo
derive theirs from here. The network keys name maco's presets (maco.models.PRESETS, the
library's own key -> timm name table; a test checks every key here is one).
"""
from __future__ import annotations

# The paper's between-subject conditions, the default of a study config without [conditions.<name>]
# tables: name -> (method, settings). A study declares its own (docs/stimuli.md, "Conditions").
PAPER_CONDITIONS = {"olah": ("olah", {}), "maco_mask": ("maco", {"mask": True}), "maco": ("maco", {}),
                    "none": ("none", {})}
CONDITIONS = tuple(PAPER_CONDITIONS)
NO_REFERENCES_METHOD = "none"  # the method of a condition that shows no references
CONDITION_NAME_LENGTH = 20  # the server's column: a condition name is at most this long
# the study's networks (docs/stimuli.md): the CNNs and the transformer each CNN is compared with
NETWORKS = ("vgg16", "resnet50", "vit_b16")
REFERENCE_NETWORK = "resnet50"  # the reference level of the network factor
TRANSFORMER_NETWORK = "vit_b16"  # the network compared with each CNN
