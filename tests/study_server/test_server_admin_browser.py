"""The researcher's pages in a real browser (Playwright + Debian's Chromium) at 1366x768: the
dashboard refreshes itself under the CSP, a preview opens beside it without ending the login,
the review page's images load, nothing scrolls sideways.

With MACO_SCREENSHOTS=docs/screenshots the screenshots are written there (small palette PNGs,
the ones docs/admin.md shows); otherwise into the test's temporary folder.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from PIL import Image
from werkzeug.serving import make_server

from .conftest import Walker, make_app
from .test_server_admin_pages import _engine
from .test_server_browser import CHROMIUM, CHROMIUM_FLAGS
from .test_server_export_admin import ADMIN_PASSWORD, _csrf, _login

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed")
VIEWPORT = {"width": 1366, "height": 768}


@pytest.fixture
def admin_server(sqlite_url: str, bundle: Path):  # noqa: ANN201
    from click.testing import CliRunner

    from maco_study import main as maco_study

    CliRunner().invoke(maco_study, ["admin", "set-password", "--db", sqlite_url, "--password-stdin"],
                       input=ADMIN_PASSWORD + "\n")
    app = make_app(sqlite_url, bundle, TARGET_PER_CONDITION=3, ADMIN_REFRESH_S=1)
    app.config["WTF_CSRF_ENABLED"] = True  # the browser logs in through the real form
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    _engine(app).dispose()


def _finish(app) -> Walker:  # noqa: ANN001
    walker = Walker(app)
    walker.to_trials()
    walker.answer_all()
    assert walker.complete("Clear instructions.").status_code == 200
    return walker


def _seed(app) -> None:  # noqa: ANN001
    """A study under way: three finished, two in the trials, one who declined consent."""
    for _ in range(3):
        _finish(app)
    for answers in (0, 3):
        walker = Walker(app)
        walker.to_trials()
        for _ in range(answers):
            walker.answer_current()
    declined = Walker(app)
    declined.start()
    assert declined.post("/api/consent", {"agree": False}).status_code == 200


def _shot(page, folder: Path, name: str) -> Path:  # noqa: ANN001
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"admin-{name}.png"
    page.screenshot(path=str(path))
    with Image.open(path) as image:  # a palette keeps the docs' PNGs small
        image.convert("RGB").quantize(colors=64).save(path, optimize=True)
    return path


def _fits_width(page) -> bool:  # noqa: ANN001
    return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")


def test_admin_pages_in_chromium(admin_server, tmp_path: Path) -> None:  # noqa: ANN001
    app, base_url = admin_server
    shots = Path(os.environ.get("MACO_SCREENSHOTS") or tmp_path)
    manifest = app.extensions["maco"].study.manifest
    _seed(app)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        blocked: list[str] = []
        page.on("console", lambda message: blocked.append(message.text)
                if "Content Security Policy" in message.text else None)
        page.goto(f"{base_url}/admin/")
        _shot(page, shots, "login")
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.click("button")
        page.wait_for_selector("#live")
        assert page.locator("progress").count() == 4 + 1 + 2  # every condition, all of them, every network
        assert _fits_width(page)
        _shot(page, shots, "dashboard")

        # a participant finishes while the dashboard is open: the page shows it by itself
        before = page.locator("tr[data-network=vgg16] progress").get_attribute("value")
        _finish(app)
        page.wait_for_selector(f"tr[data-network=vgg16] progress[value='{int(before) + 4}']", timeout=15_000)

        # a preview in a new tab; the dashboard tab stays logged in
        with context.expect_page() as opened:
            page.click("tr[data-condition=maco] a[target=_blank]")
        preview = opened.value
        preview.wait_for_selector("#agree")
        preview.close()
        page.reload()
        assert page.url == f"{base_url}/admin/" and page.locator("#live").count() == 1

        page.click("text=Stimulus review")
        page.wait_for_selector("section.unit")
        first = page.locator("section.unit").first.locator("img")
        first.last.scroll_into_view_if_needed()
        page.wait_for_load_state("networkidle")
        pairs = [p for _, p in manifest.all_query_pairs() if p.unit == manifest.units[0].key]
        assert first.count() == 3 * 9 + 3 * len(pairs)  # 3 conditions' references, 3 images a pair
        assert first.evaluate_all("imgs => imgs.every(i => i.complete && i.naturalWidth > 0)")
        assert _fits_width(page)
        page.evaluate("() => window.scrollTo(0, 0)")
        _shot(page, shots, "review")

        page.goto(f"{base_url}/admin/")
        page.click("#exclusions a >> nth=0")
        page.wait_for_selector("#trials")
        assert _fits_width(page)
        _shot(page, shots, "participant")

        # a logout elsewhere ends this session too: the open dashboard's next refresh shows the login
        page.goto(f"{base_url}/admin/")
        other = app.test_client()
        assert _login(other).status_code == 302
        assert other.post("/admin/logout", data={"csrf_token": _csrf(other, "/admin/")}).status_code == 302
        page.wait_for_url(f"{base_url}/admin/login?expired=1", timeout=15_000)
        browser.close()
    assert blocked == []
