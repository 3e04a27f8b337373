"""Reference images as immutable static files, served in front of the Flask app.

A reference image carries no side and no participant: every participant of a condition sees
the same grid for a unit, so it is addressed by its content hash (`/ref/<sha256>.png`, the
bundle's own id) and may be cached by anyone for ever (`public, max-age=1 year, immutable`):
a browser fetches each once, and a reverse proxy or CDN in front keeps one copy for everyone
(docs/study-server.md, "Several hosts"; docs/deploy/nginx.conf). Only the bundle's reference
images are served here, never a query or base image under its content hash.

The middleware answers before Flask: no session cookie is read, no rate limit counted and no
database touched, and the file's bytes go out in one piece (an image of a few tens of kB: one
call into Granian, which writes them from Rust). The server does not see a reference fetch from a proxy's cache, so presence
(study_server/speed.py) is decided on the images that carry the task: the base and both
query images, under per-participant opaque ids.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from stimuli.manifest import Manifest

REFERENCE_PREFIX = "/ref/"
REFERENCE_CACHE_CONTROL = "public, max-age=31536000, immutable"  # a year: RFC 8246's "never changes"


def reference_url(image_id: str) -> str:
    """Where a browser gets a reference image: its content id, the same for every participant."""
    return f"{REFERENCE_PREFIX}{image_id}.png"


def reference_ids(manifest: Manifest) -> frozenset[str]:
    """Every image shown in a reference grid (any unit, any condition)."""
    return frozenset(i for ref in manifest.references for i in ref.images)


class ReferenceFiles:
    """WSGI middleware: GET/HEAD `/ref/<id>.png` for the bundle's reference images, else `app`."""

    def __init__(self, app: Callable, folder: Path, ids: Iterable[str]):
        self.app = app
        self.paths = {reference_url(i): Path(folder) / f"{i}.png" for i in ids}

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = self.paths.get(environ.get("PATH_INFO", ""))
        if path is None or environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            return self.app(environ, start_response)
        etag = f'"{path.stem}"'  # the content hash: the bytes can never differ under it
        headers = [("Cache-Control", REFERENCE_CACHE_CONTROL), ("ETag", etag), ("X-Content-Type-Options", "nosniff")]
        if etag in environ.get("HTTP_IF_NONE_MATCH", ""):
            start_response("304 Not Modified", headers)
            return []
        size = path.stat().st_size
        start_response("200 OK", [("Content-Type", "image/png"), ("Content-Length", str(size)), *headers])
        if environ["REQUEST_METHOD"] == "HEAD":
            return []
        return [path.read_bytes()]
