"""The benchmark's protocol: every constant of section 4 has its home here."""
from __future__ import annotations

# Transferability: the paper's six other ImageNet classifiers, as timm names
# (the Keras applications the paper names, in their closest timm weights).
TRANSFER_CLASSIFIERS = {
    "mobilenet": "mobilenetv1_100.ra4_e3600_r224_in1k",
    "vgg16": "vgg16.tv_in1k",
    "xception": "legacy_xception.tf_in1k",
    "efficientnet": "efficientnet_b0.ra_in1k",
    "convnext_tiny": "convnext_tiny.fb_in1k",
    "densenet": "densenet121.tv_in1k",
}

# FID: Inception-v3 pool features (2048) of images resized to FID_RESIZE px
# (shorter side) and centre-cropped to FID_CROP px, Inception's input size.
FID_MODEL = "inception_v3.tv_in1k"
FID_RESIZE = 512
FID_CROP = 299

# Plausibility: Deep-KNN (Sun et al. 2022) on the visualized network's penultimate
# features, L2-normalised, against the natural images of the unit's class: the
# distance to the k-th nearest. Sun et al. use k = 1000 over ImageNet's 1.28M
# training images (k = 50 over CIFAR's 50k); against one class's images (50
# in ImageNet's validation set) that fraction is below one image: k = 1.
PLAUSIBILITY_K = 1

BATCH_SIZE = 32  # images per forward pass when scoring
UNITS_PER_RUN = 8  # units optimised together by one method call
