"""The study's defaults as plain values: its conditions and its networks.

stimuli's config (and examples/study.toml), the bundle schema, the analysis and the demo
derive theirs from here. The network keys name maco's presets (maco.models.PRESETS, the
library's own key -> timm name table; a test checks every key here is one).
"""
from __future__ import annotations

# between-subject conditions: which reference images a participant sees (none: no references)
CONDITIONS = ("olah", "maco_mask", "maco", "none")
CONDITIONS_WITHOUT_REFERENCES = ("none",)
# the study's networks (docs/stimuli.md): the CNNs and the transformer each CNN is compared with
NETWORKS = ("vgg16", "resnet50", "vit_b16")
REFERENCE_NETWORK = "resnet50"  # the reference level of the network factor
TRANSFORMER_NETWORK = "vit_b16"  # the network compared with each CNN
