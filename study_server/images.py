"""The image bytes the participant's browser gets.

A compressed PNG's size depends on its content, and the two queries of a trial differ only in
where they are occluded: the one that hides the important region may compress better or worse,
so comparing the two file sizes (or the lengths inside the files) could hint at the correct side
before answering. Query images are therefore served as uncompressed PNGs (zlib level 0, RGB, no
metadata), whose size depends only on width and height: both queries of a trial have exactly
the same size. That costs 1.6-2.4x the bytes of a compressed photo (151 KB at 224 px against
62-93 KB for scikit-image's photos); base and reference images, which carry no side, are served
as they are in the bundle.
"""
from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

from PIL import Image

from stimuli.manifest import Manifest

QUERY_CACHE_SIZE = 256  # re-encoded query images kept per process (~150 KB each at 224 px)


def uncompressed_png(path: Path) -> bytes:
    with Image.open(path) as image:
        rgb = image.convert("RGB")  # also drops every metadata chunk
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


class ImageStore:
    """Reads a bundle's images by id, query images re-encoded to a content-independent size."""

    def __init__(self, bundle_dir: Path, manifest: Manifest):
        self.folder = Path(bundle_dir) / "images"
        self.queries = frozenset(image for _, pair in manifest.all_query_pairs()
                                 for image in (pair.image_a, pair.image_b))
        self._query_bytes = lru_cache(maxsize=QUERY_CACHE_SIZE)(self._encode_query)

    def _encode_query(self, image_id: str) -> bytes:
        return uncompressed_png(self.folder / f"{image_id}.png")

    def read(self, image_id: str) -> bytes:
        if image_id in self.queries:
            return self._query_bytes(image_id)
        return (self.folder / f"{image_id}.png").read_bytes()
