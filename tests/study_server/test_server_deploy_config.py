"""The production nginx configuration (docs/deploy/nginx.conf), parsed as nginx parses it
(crossplane), against the server's own paths and headers: the shared cache holds the reference
images and nothing else, every instance is balanced, and the body limit is the server's."""
from __future__ import annotations

from pathlib import Path

import crossplane

from study_server.config import DEFAULTS
from study_server.images import SENT_IMAGES_LOCATION
from study_server.reference_files import REFERENCE_PREFIX

from .test_server_reference_files import _first_trials

CONFIG = Path(__file__).resolve().parents[2] / "docs" / "deploy" / "nginx.conf"


def _parse() -> list[dict]:
    # the file is an http-block include: contexts are not checked, directives and their arguments are
    parsed = crossplane.parse(str(CONFIG), check_ctx=False, catch_errors=False)
    assert parsed["status"] == "ok", parsed["errors"]
    return parsed["config"][0]["parsed"]


def _find(block: list[dict], directive: str) -> list[dict]:
    return [d for d in block if d["directive"] == directive]


def _https_locations() -> tuple[dict[str, list[dict]], list[dict]]:
    server = next(s for s in _find(_parse(), "server") if _find(s["block"], "ssl_certificate"))
    return {d["args"][0]: d["block"] for d in _find(server["block"], "location")}, server["block"]


def test_only_the_reference_images_are_cached_and_every_instance_balanced() -> None:
    top = _parse()
    locations, server = _https_locations()
    assert set(locations) == {REFERENCE_PREFIX, SENT_IMAGES_LOCATION, "/"}
    cache_zone = _find(top, "proxy_cache_path")[0]["args"]
    zone = next(a for a in cache_zone if a.startswith("keys_zone=")).split("=")[1].split(":")[0]
    assert _find(locations[REFERENCE_PREFIX], "proxy_cache")[0]["args"] == [zone]
    assert not _find(locations["/"], "proxy_cache")  # per-participant images never in a shared cache
    upstream = _find(top, "upstream")[0]
    assert len(_find(upstream["block"], "server")) >= 2
    for block in (locations[REFERENCE_PREFIX], locations["/"]):
        assert _find(block, "proxy_pass")[0]["args"] == [f"http://{upstream['args'][0]}"]
    # nginx retries only requests that found no instance, never a POST that one may have stored
    assert _find(server, "proxy_next_upstream")[0]["args"] == ["error", "timeout"]
    limit = _find(server, "client_max_body_size")[0]["args"][0]
    assert int(limit.removesuffix("k")) * 1024 == DEFAULTS["MAX_CONTENT_LENGTH"]
    forwarded = {d["args"][0] for d in _find(server, "proxy_set_header")}
    assert {"X-Forwarded-For", "X-Forwarded-Proto", "Host"} <= forwarded


def test_the_server_marks_what_a_shared_cache_may_keep(app) -> None:  # noqa: ANN001
    """nginx's proxy_cache (and a CDN) stores a response marked public with a max-age and never one
    marked private: the reference images are the first, the per-participant images the second."""
    for w, trial in _first_trials(app, 3):
        for url in trial["references"]:
            assert url.startswith(REFERENCE_PREFIX)
            control = app.test_client().get(url).headers["Cache-Control"]
            assert "public" in control and "max-age=31536000" in control
        for url in (trial["base"], trial["left"], trial["right"]):
            assert w.client.get(url).headers["Cache-Control"].startswith("private")


def test_the_sent_images_are_nginx_s_internal_files() -> None:
    """X-Accel-Redirect's target: only nginx reaches it (internal), a folder (alias ending in /, the
    header names a file in it), never proxied or cached, and no ETag derived from the file."""
    locations, _ = _https_locations()
    sent = locations[SENT_IMAGES_LOCATION]
    assert _find(sent, "internal")
    alias = _find(sent, "alias")[0]["args"][0]
    assert alias.startswith("/") and alias.endswith("/")
    assert not _find(sent, "proxy_pass") and not _find(sent, "proxy_cache")
    assert _find(sent, "etag")[0]["args"] == ["off"]
