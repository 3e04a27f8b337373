"""Reference images as immutable static files (study_server/reference_files.py): content-addressed,
the same URL for every participant, cacheable by anyone for ever, answered before Flask; and only
the bundle's references are served so, never a base or query image under its content hash."""
from __future__ import annotations

import re
from pathlib import Path

from stimuli.manifest import load_manifest
from study_server.reference_files import REFERENCE_CACHE_CONTROL, reference_url

from .conftest import Walker

REFERENCE_URL = re.compile(r"/ref/([0-9a-f]{64})\.png")


def _first_trials(app, n: int) -> list[tuple[Walker, dict]]:  # noqa: ANN001
    """`n` participants on their first trial (the conditions are balanced, so they spread over them)."""
    walkers = []
    for _ in range(n):
        w = Walker(app)
        w.to_first_trial()
        walkers.append((w, w.study.trial()["trial"]))
    return walkers


def test_references_are_static_files_and_the_task_images_stay_opaque(app, bundle: Path) -> None:  # noqa: ANN001
    manifest = load_manifest(bundle)
    shown = 0
    for w, trial in _first_trials(app, len(manifest.conditions)):  # one per condition (balanced)
        condition = w.participant().condition
        # the grid is one of the condition's reference sets, under URLs that name only the content
        grids = [[reference_url(i) for i in ref.images] for ref in manifest.references if ref.condition == condition]
        assert trial["references"] in grids or (not trial["references"] and not grids)
        for url in trial["references"]:
            image_id = REFERENCE_URL.fullmatch(url).group(1)
            reply = app.test_client().get(url)  # no session: a CDN or another browser fetches it the same way
            assert reply.status_code == 200 and reply.mimetype == "image/png"
            assert reply.data == (bundle / "images" / f"{image_id}.png").read_bytes()
            assert reply.headers["Cache-Control"] == REFERENCE_CACHE_CONTROL
            assert reply.headers["ETag"] == f'"{image_id}"'
            assert "Set-Cookie" not in reply.headers
            revalidated = app.test_client().get(url, headers={"If-None-Match": f'"{image_id}"'})
            assert revalidated.status_code == 304 and revalidated.data == b""
            shown += 1
        for key in ("base", "left", "right"):  # the images of the task stay opaque and private
            assert trial[key].startswith("/img/")
            reply = w.client.get(trial[key])
            assert reply.status_code == 200 and reply.headers["Cache-Control"].startswith("private")
            assert reply.headers["ETag"] == f"\"{trial[key].removeprefix('/img/')}\""  # the opaque id: names nothing more
            assert app.test_client().get(trial[key]).status_code == 404  # another browser: nothing
    assert shown, "the test bundle has a condition with references"
    # only the bundle's references are static: never a base or query image under its content hash
    client = app.test_client()
    for _, pair in manifest.all_query_pairs():
        for image_id in (pair.base_image, pair.image_a, pair.image_b):
            assert client.get(f"/ref/{image_id}.png").status_code == 404
    reference = next(i for ref in manifest.references for i in ref.images)
    assert client.post(f"/ref/{reference}.png").status_code in (404, 405)  # a file: GET and HEAD only
