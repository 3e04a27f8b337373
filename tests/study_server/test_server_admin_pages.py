"""The researcher's pages: stimulus review, preview, targets and live progress, readable numbers,
and the exclusion preview against the analysis' own rules."""
from __future__ import annotations

import html
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from analysis.load import load_export
from maco_study import main as maco_study
from stimuli.manifest import load_manifest
from study_server import review
from study_server.formatting import count, duration, percent, timestamp, window_size
from study_server.models import Participant, Trial

from . import test_server_export_admin
from .conftest import Walker, make_app
from .test_server_export_admin import _finished, _login

admin_app = test_server_export_admin.admin_app  # the fixture: the app with an admin password set

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def _engine(app):
    return app.extensions["maco"].engine


def _admin(app):
    client = app.test_client()
    assert _login(client).status_code == 302
    return client


def _participants(app, **where) -> list[Participant]:
    with Session(_engine(app)) as session:
        return list(session.scalars(select(Participant).filter_by(**where)))


def analysed_export(db_url: str, folder: Path):  # noqa: ANN201 - a DataFrame
    """What the analysis reads of a study database: `maco-study export`, loaded by analysis.load."""
    out = folder / "export" / "responses.csv"
    result = CliRunner().invoke(maco_study, ["export", "--db", db_url, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return load_export(out)


def _status_counts(page: str) -> dict[str, list[int]]:
    """condition -> [started, in progress, completed, returned, timed out] from the dashboard."""
    rows = re.findall(r'<tr data-condition="(\w+)">(.*?)</tr>', page, re.DOTALL)
    return {c: [int(n) for n in re.findall(r'<td class="num">(\d+)</td>', row)] for c, row in rows}


# --- readable numbers -------------------------------------------------------------------------
def test_formatting_filters_write_known_values() -> None:
    assert duration(360.85299999999995) == "361 ms" and duration(9_999.4) == "9999 ms"
    assert duration(48_213) == "48.2 s" and duration(725_000) == "12 min 05 s" and duration(None) == "–"
    moment = datetime(2026, 5, 1, 14, 3, 27, 912_345)
    assert timestamp(moment) == timestamp(moment.replace(tzinfo=timezone.utc)) == "2026-05-01 14:03:27"
    assert timestamp(None) == "–"

    class Window:
        window_width, window_height = 1366, None

    assert window_size(Window()) == "–"
    Window.window_height = 768
    assert window_size(Window()) == "1366×768"
    assert percent(2 / 3) == "67%" and percent(None) == "–"
    assert count(4.0) == "4" and count(10 / 3) == "3.3" and count(None) == "–"


def test_admin_pages_show_readable_numbers(admin_app, walker) -> None:
    done = _finished(walker)
    half = walker()
    half.start()  # no window size, no instructions time, no trials yet
    with Session(_engine(admin_app)) as session:
        session.execute(update(Trial).where(Trial.participant_id == done.participant().id, Trial.position == 0)
                        .values(rt_ms=360.85299999999995))
        session.commit()
    client = _admin(admin_app)
    pages = {url: client.get(url).data.decode() for url in (
        "/admin/", "/admin/live", f"/admin/participant/{done.participant().public_id}",
        f"/admin/participant/{half.participant().public_id}", "/admin/review")}
    for url, page in pages.items():
        text = html.unescape(re.sub(r"<[^>]+>", " ", page))
        assert "None" not in text and "nan" not in text.split(), url
        assert not re.search(r"\d\.\d{4,}", text), url  # no raw float, no microseconds
        assert not re.search(r"\d\d:\d\d:\d\d\.\d", text), url
    detail = pages[f"/admin/participant/{done.participant().public_id}"]
    assert "361 ms" in detail and "240 ms" in detail and "1280×800" in detail  # Walker: rt_ms 240
    assert len(TIMESTAMP.findall(detail)) == 2 + 14  # started, completed, every answer
    assert "–" in pages[f"/admin/participant/{half.participant().public_id}"]  # window not measured yet


# --- stimulus review -------------------------------------------------------------------------
def _review_pages(client, **filters) -> str:
    pages, page = [], 1
    while True:
        response = client.get("/admin/review", query_string={**filters, "page": page})
        assert response.status_code == 200, response.data
        pages.append(response.data.decode())
        if f'page={page + 1}"' not in pages[-1] and f"page={page + 1}&" not in pages[-1]:
            return "".join(pages)
        page += 1


def test_review_shows_every_trial_with_its_answer_and_activations(admin_app, bundle: Path,
                                                                  monkeypatch) -> None:
    manifest = load_manifest(bundle)
    monkeypatch.setattr(review, "UNITS_PER_PAGE", 1)  # pages are walked too
    client = _admin(admin_app)
    page = _review_pages(client)
    assert page.count('class="unit"') == len(manifest.units)
    for kind, pair in manifest.all_query_pairs():
        row = re.search(rf'<tr data-pair="{pair.id}">(.*?)</tr>', page, re.DOTALL).group(1)
        assert kind in row
        favoured = re.search(r'class="query favoured"><img src="/admin/image/([0-9a-f]+)"', row).group(1)
        assert favoured == pair.correct_image and row.count("favoured") == 2  # class and words, once
        for activation in (pair.activation_base, pair.activation_max, pair.activation_min):
            assert f"{activation:.3f}" in row
        difference = re.search(r'<td class="num difference">([-\d.]+)</td>', row).group(1)
        assert difference == f"{pair.activation_max - pair.activation_min:.3f}"
    for unit in manifest.units:  # every condition's references, `none` says it has none
        section = re.search(rf'data-unit="{unit.key}">(.*?)</section>', page, re.DOTALL).group(1)
        for condition in manifest.conditions:
            shown = re.findall(rf'<img src="/admin/image/([0-9a-f]+)" alt="{condition} reference', section)
            assert shown == manifest.reference_images(unit.key, condition)
        assert "no references: the participants see the queries only" in section
    bundle_table = re.search(r'<table id="bundle">(.*?)</table>', page, re.S).group(1)
    assert re.findall(r"<tr><td>(\w+)</td><td>([\w.]+)</td><td>(\w+)</td>\s*<td class=\"num\">(\d+)</td>"
                      r'<td class="num">([\d.]+)</td>', bundle_table) == [
        (n.key, n.timm_name, n.weights, "2", "4") for n in manifest.networks]
    image = manifest.practice_trials[0].image_a
    served = client.get(f"/admin/image/{image}")
    assert served.status_code == 200 and served.data == (bundle / "images" / f"{image}.png").read_bytes()
    assert client.get(f"/admin/image/{'0' * 64}").status_code == 404


def test_review_filters(admin_app, bundle: Path) -> None:
    manifest = load_manifest(bundle)
    client = _admin(admin_app)
    vgg = _review_pages(client, network="vgg16")
    assert set(re.findall(r'data-unit="([^"]+)"', vgg)) == {u.key for u in manifest.units if u.network == "vgg16"}
    catch = _review_pages(client, kind="catch")
    assert re.findall(r'data-pair="([^"]+)"', catch) == [p.id for p in manifest.catch_trials]
    none = _review_pages(client, condition="none", unit=manifest.units[0].key)
    assert "reference 1" not in none and 'data-unit="' + manifest.units[0].key in none
    maco = _review_pages(client, condition="maco")
    assert "olah reference" not in maco and "maco reference 9" in maco
    for bad in ({"network": "alexnet"}, {"kind": "warmup"}, {"page": "0"}, {"page": "x"}, {"page": "\u00b2"},
                {"page": "\u0661"}, {"page": "9" * 5000}, {"sort": "activation"}):
        response = client.get("/admin/review", query_string=bad)
        assert response.status_code == 400 and (b"unknown" in response.data or b"page must" in response.data)
    assert client.get("/admin/review?page=99").headers["Location"].endswith("/admin/review")


def test_review_sorts_by_the_activation_difference(admin_app, bundle: Path) -> None:
    manifest = load_manifest(bundle)
    client = _admin(admin_app)
    page = _review_pages(client, sort="difference")
    shown = [float(d) for d in re.findall(r'<td class="num difference">([-\d.]+)</td>', page)]
    assert len(shown) == len(list(manifest.all_query_pairs()))
    units = re.findall(r'data-unit="([^"]+)"(.*?)</section>', page, re.S)
    smallest = []
    for _unit, section in units:  # within a unit near-ties first, and the units by their nearest tie
        differences = [float(d) for d in re.findall(r'<td class="num difference">([-\d.]+)</td>', section)]
        assert differences == sorted(differences)
        smallest.append(differences[0])
    assert smallest == sorted(smallest) and len(units) == len(manifest.units)
    assert '<option value="difference" selected>' in page


# --- preview -----------------------------------------------------------------------------------
def test_preview_is_closed_to_anonymous_visitors(app) -> None:
    client = app.test_client()
    for _ in range(70):
        assert client.get("/preview").status_code == 403
    assert client.get("/preview?condition=maco").status_code == 403
    assert _participants(app) == []


@pytest.mark.parametrize("flag", ["PUBLIC_PREVIEW", "PREVIEW_MODE"])
def test_a_config_flag_opens_the_preview(db_url: str, bundle: Path, flag: str) -> None:
    app = make_app(db_url, bundle, **{flag: 1})
    assert app.test_client().get("/preview?condition=olah").status_code == 302
    assert [(p.is_preview, p.condition) for p in _participants(app)] == [(True, "olah")]
    _engine(app).dispose()


def test_admin_preview_keeps_the_login_and_never_counts(admin_app, db_url: str, walker, tmp_path: Path) -> None:
    real = _finished(walker)
    client = _admin(admin_app)
    dashboard = client.get("/admin/").data.decode()
    for condition in load_manifest(admin_app.config["BUNDLE_DIR"]).conditions:
        assert f'href="/preview?condition={condition}"' in dashboard
    assert client.get("/preview?condition=nope").status_code == 400
    assert client.get("/preview?condition=maco").status_code == 302
    preview = Walker(admin_app)
    preview.client = client  # the admin's own browser walks the preview to its end
    assert preview.post("/api/consent", {"agree": True}).status_code == 200
    assert preview.post("/api/device", {"window_width": 1366, "window_height": 768, "is_phone": False}).status_code == 200
    page = client.get("/study")
    assert page.status_code == 200 and "Preview (maco): these answers are kept apart" in page.data.decode()
    assert "Preview (" not in real.client.get("/study").data.decode()  # a real participant's page has none
    assert preview.post("/api/instructions", {}).status_code == 200
    with Session(_engine(admin_app)) as session:
        preview_id = session.scalar(select(Participant.id).where(Participant.is_preview.is_(True)))
        key = dict(session.execute(select(Trial.position, Trial.correct_side)
                                   .where(Trial.participant_id == preview_id)).all())
    while (trial := preview.current()) is not None:
        assert preview.post("/api/answer", preview.answer_body(trial["position"], key[trial["position"]])
                            ).status_code == 200
        with Session(_engine(admin_app)) as session:
            key = dict(session.execute(select(Trial.position, Trial.correct_side)
                                       .where(Trial.participant_id == preview_id)).all())
    assert preview.complete().status_code == 200
    assert client.get("/admin/").status_code == 200  # still logged in
    assert [(p.condition, p.status) for p in _participants(admin_app, is_preview=True)] == [("maco", "completed")]
    # never a real participant: not on the dashboard, not in the export, not in the analysis
    counts = _status_counts(client.get("/admin/live").data.decode())
    assert {c: n[2] for c, n in counts.items()} == {c: int(c == real.participant().condition) for c in counts}
    assert sum(map(sum, counts.values())) == 1
    exported = analysed_export(db_url, tmp_path)
    assert set(exported["participant_id"]) == {real.participant().public_id}
    download = client.get("/admin/responses.csv").data.decode()
    assert download.count("\n") == 1 + 14


def test_an_ended_admin_session_cannot_preview(admin_app) -> None:
    client = _admin(admin_app)
    with client.session_transaction() as session:
        session["admin_seen"] -= admin_app.config["ADMIN_SESSION_MIN"] * 60 + 1
    assert client.get("/preview").status_code == 403
    assert _participants(admin_app) == []
