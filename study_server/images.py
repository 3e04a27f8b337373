"""The image bytes the participant's browser gets.

A compressed PNG's size depends on its content, and the two queries of a trial differ only in
where they are occluded: the one that hides the important region may compress better or worse,
so comparing the two file sizes (or the lengths inside the files) could hint at the correct side
before answering. Query images are therefore served as uncompressed PNGs (zlib level 0, RGB, no
metadata), whose size depends only on width and height: both queries of a trial have exactly
the same size. That costs 1.6-2.4x the bytes of a compressed photo (151 KB at 224 px against
62-93 KB for scikit-image's photos); base and reference images, which carry no side, are served
as they are in the bundle.

Behind a web server (SEND_IMAGES=x-accel-redirect or x-sendfile, study_server/config.py) the
app still decides and records every image it lets out, then hands the sending to the web server:
the bytes it would send are written once to SENT_IMAGES_DIR (`sent_file`) and the reply names the
file in a header the web server consumes (nginx reads X-Accel-Redirect from an `internal` location
that no browser can request, docs/deploy/nginx.conf). Every file there has the same modification
time, so nothing the web server derives from it (Last-Modified, its ETag) tells images apart.
"""
from __future__ import annotations

import io
import os
import tempfile
from functools import lru_cache
from pathlib import Path

from PIL import Image

from stimuli.manifest import Manifest

QUERY_CACHE_SIZE = 256  # re-encoded query images kept per process (~150 KB each at 224 px)
SENT_IMAGES_LOCATION = "/_maco_sent/"  # nginx's internal location for X-Accel-Redirect
SENT_FILE_MTIME = 0  # one modification time for every sent file: Last-Modified names no image


def uncompressed_png(path: Path) -> bytes:
    with Image.open(path) as image:
        rgb = image.convert("RGB")  # also drops every metadata chunk
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


class ImageStore:
    """Reads a bundle's images by id, query images re-encoded to a content-independent size."""

    def __init__(self, bundle_dir: Path, manifest: Manifest, sent_dir: Path | None = None):
        self.folder = Path(bundle_dir) / "images"
        self.queries = frozenset(image for _, pair in manifest.all_query_pairs()
                                 for image in (pair.image_a, pair.image_b))
        self._query_bytes = lru_cache(maxsize=QUERY_CACHE_SIZE)(self._encode_query)
        self.sent_dir = None if sent_dir is None else Path(sent_dir).resolve()  # X-Sendfile names absolute paths
        # one check (and at most one write) per image and process: a request then costs no file system call
        self.sent_file = lru_cache(maxsize=None)(self._sent_file)

    def _encode_query(self, image_id: str) -> bytes:
        return uncompressed_png(self.folder / f"{image_id}.png")

    def read(self, image_id: str) -> bytes:
        if image_id in self.queries:
            return self._query_bytes(image_id)
        return (self.folder / f"{image_id}.png").read_bytes()

    def _sent_file(self, image_id: str) -> Path:
        """The file in `sent_dir` holding exactly what `read` returns, written on first need (and
        then trusted to stay: empty that folder only while no server runs)."""
        if self.sent_dir is None:
            raise RuntimeError("no SENT_IMAGES_DIR configured")
        path = self.sent_dir / f"{image_id}.png"
        if not path.exists():
            # atomic: another worker or host writing the same file, or a crash, never leaves a partial one
            self.sent_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.sent_dir, suffix=".tmp", delete=False) as file:
                file.write(self.read(image_id))
            os.chmod(file.name, 0o644)  # the web server's user reads it
            os.utime(file.name, (SENT_FILE_MTIME, SENT_FILE_MTIME))
            os.replace(file.name, path)
        return path
