"""The stimulus bundle: its manifest schema, writer and validating loader.

A bundle is a directory::

    BUNDLE/manifest.json
    BUNDLE/images/<sha256 of the PNG bytes>.png

This package is the only contract between the stimulus generator (which writes
bundles) and the study server (which reads them). It imports nothing heavy
(Pillow only inside the test bundle of stimuli.testing). schema.py holds the
records, validate.py the rules below, files.py the bundle on disk.

Schema (``schema_version`` 1), all keys required unless marked optional::

    {
      "schema": "maco-study-bundle", "schema_version": 1,
      "study": "maco-2023",                       # study name, [A-Za-z0-9._-]
      "networks": [{"key": "resnet50", "timm_name": "resnet50.a1_in1k",
                    "weights": "pretrained (timm hub)" | "random" | ...,
                    "num_classes": 1000, "input_size": 224}],
      "units": [{"key": "resnet50:417", "network": "resnet50",
                 "class_index": 417, "label": "balloon"}],
      "conditions": ["olah", "maco_mask", "maco", "none"],
      "references": [{"network": "resnet50", "unit": "resnet50:417",
                      "condition": "maco", "seeds": [0, 1, ...],
                      "images": [<image id>, ...],
                      "source_images": [...] }],   # maco_mask only: the MACO images it masks
      "query_pairs": [<query pair>], "practice_trials": [<query pair>],
      "catch_trials": [<query pair>],
      "protocol": {"main_trials_per_participant": null | int,
                   "max_practice_rounds": 3,
                   "practice_trials_per_round": null | int},   # optional: see below
      "images": {<image id>: {"width": 224, "height": 224}},
      "provenance": {"created_at": "2026-...Z", "config": {...},
                     "software": {"maco-study": "0.1.0", "torch": ...}, ...}
    }

    query pair = {"id": "q-resnet50-417-0", "unit": "resnet50:417",
                  "base_image": id, "image_a": id, "image_b": id,
                  "correct": "a" | "b",
                  "activation_base": float, "activation_max": float,
                  "activation_min": float,            # may be null in catch trials
                  "occluder_a": {"x": int, "y": int, "size": int},
                  "occluder_b": {"x": int, "y": int, "size": int},
                  "note": str}                         # optional

Rules checked on load: every id unique; every unit's network exists and its
key is ``<network>:<class_index>``; every non-``none`` condition has exactly
one reference set per unit used in any trial, ``none`` has none; ``condition_methods``
(optional: older bundles hold the paper's four) names each condition's method and settings; a
masked condition's ``source_images`` equal the images of the unmasked condition of the same method
and settings (the paper's maco_mask and maco); natural exemplars carry ``activations`` (descending)
and ``pool_files``, one per image, and no seeds (docs/methods.md); no query image (base, a, b) is shown by trials of two
kinds (practice, main, catch); with ``practice_trials_per_round`` k, ``practice_trials`` holds
``max_practice_rounds`` rounds of k pairs (round r: the r-th slice), no image in two rounds;
no more catch trials than main trials per participant (each
follows a main trial of its own); ``activation_max >= activation_min`` for the
correct image being the argmax; occluders lie inside the base image; every
image referenced is listed in ``images``, every listed image exists on disk
(and, with ``verify_hashes=True``, hashes to its id).
"""
from __future__ import annotations

from .files import add_image, atomic_write, image_path, load_manifest, write_manifest
from .schema import (IMAGES_DIR, MANIFEST_FILE, NAME_PATTERN, SCHEMA_NAME, SCHEMA_VERSION, ConditionMethod, ImageInfo, Manifest, ManifestError, Network, Occluder, Protocol, QueryPair,
                     ReferenceSet, Unit)
from .validate import parse_manifest

__all__ = ["IMAGES_DIR", "MANIFEST_FILE", "NAME_PATTERN", "SCHEMA_NAME", "SCHEMA_VERSION", "ConditionMethod",
           "ImageInfo", "Manifest", "ManifestError", "Network", "Occluder", "Protocol", "QueryPair",
           "ReferenceSet", "Unit", "add_image", "atomic_write", "image_path", "load_manifest", "parse_manifest",
           "write_manifest"]
