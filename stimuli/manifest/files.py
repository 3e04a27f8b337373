"""A bundle on disk: content-addressed images and the manifest, written atomically, loaded validated."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .schema import IMAGES_DIR, MANIFEST_FILE, Manifest, ManifestError
from .validate import parse_manifest, png_size


def image_path(bundle_dir: str | os.PathLike, image_id: str) -> Path:
    return Path(bundle_dir) / IMAGES_DIR / f"{image_id}.png"


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder + os.replace: never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_image(bundle_dir: str | os.PathLike, image: Any) -> str:
    """Store a PNG (bytes, or a PIL image which is encoded as PNG) once; return its id.

    The id is the sha256 of the PNG bytes, so adding the same image twice is free.
    """
    if isinstance(image, (bytes, bytearray)):
        data = bytes(image)
    else:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data = buffer.getvalue()
    png_size(data)
    image_id = hashlib.sha256(data).hexdigest()
    path = image_path(bundle_dir, image_id)
    if not path.exists():
        atomic_write(path, data)
    return image_id


def write_manifest(bundle_dir: str | os.PathLike, manifest: Manifest) -> Path:
    """Fill `manifest.images` from the image files, validate, and write atomically."""
    manifest.images = {}
    for image_id in sorted(manifest.referenced_images()):
        path = image_path(bundle_dir, image_id)
        if not path.is_file():
            raise ManifestError(f"images: {image_id} is referenced but {path} does not exist")
        with path.open("rb") as f:
            manifest.images[image_id] = png_size(f.read(24))
    parse_manifest(json.loads(json.dumps(manifest.to_dict())))  # validate what will be read
    target = Path(bundle_dir) / MANIFEST_FILE
    atomic_write(target, (json.dumps(manifest.to_dict(), indent=1) + "\n").encode())
    return target


def load_manifest(bundle_dir: str | os.PathLike, verify_hashes: bool = False) -> Manifest:
    """Read and validate a bundle; raise ManifestError naming the broken field.

    Every listed image must exist; `verify_hashes=True` also re-hashes them.
    """
    path = Path(bundle_dir) / MANIFEST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path}: no manifest (is this a bundle directory?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc})") from None
    manifest = parse_manifest(data)
    for image_id in manifest.images:
        file = image_path(bundle_dir, image_id)
        if not file.is_file():
            raise ManifestError(f"images.{image_id}: file {file} is missing")
        if verify_hashes and hashlib.sha256(file.read_bytes()).hexdigest() != image_id:
            raise ManifestError(f"images.{image_id}: file content does not match its hash")
    return manifest


