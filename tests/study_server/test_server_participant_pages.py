"""What a participant sees and does, in Debian's Chromium (Playwright): one answer per key press,
the images' size, no scrolling at the smallest window allowed, a phone sent to a computer.

Needs /usr/bin/chromium and the playwright package (never `playwright install`); skips without.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from study_server.config import DEFAULTS
from study_server.models import Participant, Trial

from .conftest import prolific_pid

CHROMIUM = "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed")
READY = ".answers button:enabled"
MIN_WINDOW = {"width": DEFAULTS["MIN_WINDOW_WIDTH"], "height": DEFAULTS["MIN_WINDOW_HEIGHT"]}
SCRIPT = Path(__file__).parents[2] / "scripts" / "participant_screenshots.py"
_spec = importlib.util.spec_from_file_location("participant_screenshots", SCRIPT)
SCREENSHOTS = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(SCREENSHOTS)
PHONE_AGENT = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 Safari/604.1"


@pytest.fixture
def browser():  # noqa: ANN201
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


def _participant(app, pid: str) -> Participant:  # noqa: ANN001
    with Session(app.extensions["maco"].engine) as session:
        return session.scalar(select(Participant).where(Participant.prolific_pid == prolific_pid(pid)))


def _trials(app, pid: str) -> list[Trial]:  # noqa: ANN001
    with Session(app.extensions["maco"].engine) as session:
        return list(session.scalars(select(Trial).join(Participant)
                                    .where(Participant.prolific_pid == prolific_pid(pid)).order_by(Trial.position)))


def _to_instructions(page, base_url: str, pid: str) -> None:  # noqa: ANN001
    page.goto(f"{base_url}/start?PROLIFIC_PID={prolific_pid(pid)}&STUDY_ID=s1&SESSION_ID=x1")
    page.click("#agree")
    page.wait_for_selector("#check")
    page.click("#check")
    page.wait_for_selector("#start")


def _set_condition(app, pid: str, condition: str) -> None:  # noqa: ANN001
    with app.extensions["maco"].engine.begin() as conn:
        conn.execute(update(Participant).where(Participant.prolific_pid == prolific_pid(pid))
                     .values(condition=condition))


def _through_practice(page, app, pid: str) -> None:  # noqa: ANN001
    """Answer the practice right (the database is the oracle) up to the first main trial on screen."""
    while True:
        ready = page.wait_for_selector(f"{READY}, #feedback-next:visible, #pause-continue:visible")
        if ready.get_attribute("id") in ("feedback-next", "pause-continue"):
            main = ready.get_attribute("id") == "pause-continue"
            ready.click()
            if main:
                page.wait_for_selector(READY)
                return
            continue
        current = next(t for t in _trials(app, pid) if t.answer_id is None)
        page.keyboard.press("1" if current.correct_side == "left" else "6")
        page.wait_for_selector("#feedback-next:visible")


def _scrolls(page) -> bool:  # noqa: ANN001
    """The page does not fit the window (scripts/participant_screenshots.py's SCROLLS)."""
    return page.evaluate(SCREENSHOTS.SCROLLS)


def test_a_click_before_the_script_has_run_waits_for_it(live_server_factory, browser) -> None:  # noqa: ANN001
    """The step buttons are disabled until study.js attaches their handler: a click on a page whose
    script is still downloading is not lost (before, it did nothing, and the participant was stuck)."""
    app, base_url = live_server_factory()
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    held = []
    page.route("**/static/study.js", lambda route: held.append(route))  # the script's download hangs until released
    page.goto(f"{base_url}/start?PROLIFIC_PID={prolific_pid('slowjs1')}&STUDY_ID=s1&SESSION_ID=x1", wait_until="commit")
    page.wait_for_selector("#agree", state="attached")
    with pytest.raises(sync_api.TimeoutError):
        page.click("#agree", timeout=1000)
    assert _participant(app, "slowjs1").consented_at is None
    held[0].continue_()
    page.click("#agree")
    page.wait_for_selector("#check")
    assert _participant(app, "slowjs1").consented_at is not None


@pytest.mark.parametrize("decode", ["Promise.reject(new DOMException('no', 'EncodingError'))", "new Promise(() => {})"],
                         ids=["rejects", "never-settles"])
def test_a_browser_whose_image_decode_fails_still_shows_the_trial(live_server_factory, browser, decode) -> None:  # noqa: ANN001
    """decode() may reject a loaded image (Safari under memory pressure) or settle late: the page uses
    the loaded image (before, it retried for ~19 s and gave up, or waited forever at the fixation cross)."""
    app, base_url = live_server_factory(INTER_TRIAL_MS=0)
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    page.add_init_script(f"HTMLImageElement.prototype.decode = function () {{ return {decode}; }};")
    _to_instructions(page, base_url, "nodecode1")
    page.click("#start")
    page.wait_for_selector(READY, timeout=15000)
    assert page.evaluate("() => document.getElementById('left').naturalWidth") > 0


def test_a_held_key_answers_one_trial(live_server_factory, browser) -> None:  # noqa: ANN001
    app, base_url = live_server_factory(INTER_TRIAL_MS=100)
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    _to_instructions(page, base_url, "heldkey1")
    page.click("#start")
    _through_practice(page, app, "heldkey1")
    repeats = page.evaluate("""() => { window.repeats = 0;
        document.addEventListener("keydown", (e) => { if (e.repeat) window.repeats++; }); return 0; }""")
    answered = sum(t.answer_id is not None for t in _trials(app, "heldkey1"))
    first = next(t for t in _trials(app, "heldkey1") if t.answer_id is None)
    page.keyboard.down("2")  # held: the browser repeats keydown with repeat: true
    page.wait_for_selector(READY, state="detached")
    for _ in range(20):
        page.keyboard.down("2")
    page.wait_for_selector(READY)  # the next trial is on screen, the key still down
    for _ in range(20):
        page.keyboard.down("2")
    repeats = page.evaluate("() => window.repeats")
    trials = _trials(app, "heldkey1")
    assert repeats == 40
    assert sum(t.answer_id is not None for t in trials) == answered + 1
    stored = next(t for t in trials if t.position == first.position)
    assert (stored.chosen_side, stored.confidence) == ("left", 2)
    assert 0 < stored.rt_ms <= stored.server_elapsed_ms + 250
    # released and pressed again: the next trial is answered
    page.keyboard.up("2")
    page.keyboard.press("5")
    page.wait_for_selector(READY, state="detached")
    page.wait_for_selector(READY)
    trials = _trials(app, "heldkey1")
    assert sum(t.answer_id is not None for t in trials) == answered + 2
    assert next(t for t in trials if t.position == first.position + 1).chosen_side == "right"


@pytest.mark.parametrize("condition", ["maco", "none"])
def test_queries_fill_the_window_at_1366x768(live_server_factory, browser, condition: str) -> None:  # noqa: ANN001
    app, base_url = live_server_factory()
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    pid = f"size{condition}"
    page.goto(f"{base_url}/start?PROLIFIC_PID={prolific_pid(pid)}&STUDY_ID=s1&SESSION_ID=x1")
    _set_condition(app, pid, condition)
    page.click("#agree")
    page.wait_for_selector("#check")
    page.click("#check")
    page.click("#start")
    page.wait_for_selector(READY)
    left, right = page.locator("#left").bounding_box(), page.locator("#right").bounding_box()
    assert left["height"] == right["height"] >= 0.45 * 768  # 180 px before (23%)
    assert left["y"] >= 0 and left["y"] + left["height"] <= 768
    grid = page.locator("#references img")
    if condition == "none":
        assert grid.count() == 0
        assert abs((left["x"] + right["x"] + right["width"]) / 2 - 683) <= 2  # centred
    else:
        assert grid.count() == 9
        tile = grid.first.bounding_box()
        assert tile["width"] >= 100  # 96 px before
        assert left["height"] / tile["height"] < 4  # the grid stays readable beside the queries
    assert not _scrolls(page)


def test_no_page_scrolls_at_the_smallest_window(live_server_factory, browser) -> None:  # noqa: ANN001
    app, base_url = live_server_factory(INTER_TRIAL_MS=0, BREAK_EVERY=2, NOCONSENT_CODE="NOCONSENT")
    page = browser.new_page(viewport=MIN_WINDOW)
    seen = []

    def check(name: str) -> None:
        seen.append(name)
        assert not _scrolls(page), name

    page.goto(f"{base_url}/start?PROLIFIC_PID={prolific_pid('small1')}&STUDY_ID=s1&SESSION_ID=x1")
    check("consent")
    page.click("#agree")
    page.wait_for_selector("#check")
    check("device")
    page.click("#check")
    page.wait_for_selector("#start")
    page.wait_for_load_state("networkidle")
    check("instructions")
    page.click("#start")
    page.wait_for_selector(READY)
    check("trial")
    page.go_back()  # Back stays on the study and says why
    page.wait_for_selector("#back-notice:visible")
    assert page.url == f"{base_url}/study"
    while True:
        ready = page.wait_for_selector(f"{READY}, #feedback-next:visible, #pause-continue:visible, #finish")
        kind = ready.get_attribute("id") or "trial"
        check(kind)
        if kind == "finish":
            break
        if kind == "trial":
            current = next(t for t in _trials(app, "small1") if t.answer_id is None)
            page.keyboard.press("1" if current.correct_side == "left" else "6")
            page.wait_for_selector(READY, state="detached")
        else:
            ready.click()
            page.wait_for_selector(f"#{kind}", state="hidden")
    page.click("#finish")
    page.wait_for_selector("h1:has-text('Thank you')")
    check("done")
    declined = browser.new_page(viewport=MIN_WINDOW)
    declined.goto(f"{base_url}/start?PROLIFIC_PID={prolific_pid('small2')}&STUDY_ID=s1&SESSION_ID=x1")
    declined.click("#decline")
    declined.wait_for_selector("#confirm-end[open]")  # ending the study asks first
    page = declined
    check("confirm")
    declined.click("#confirm-yes")
    declined.wait_for_selector("#completion-link")
    assert declined.get_attribute("#completion-link", "href").endswith("cc=NOCONSENT")
    check("returned")
    assert {"feedback-next", "pause-continue", "trial", "finish"} <= set(seen)


def test_a_phone_is_sent_to_a_computer_where_the_same_id_goes_on(live_server_factory, browser) -> None:  # noqa: ANN001
    app, base_url = live_server_factory()
    link = f"{base_url}/start?PROLIFIC_PID={prolific_pid('phone1')}&STUDY_ID=s1&SESSION_ID=x1"
    phone = browser.new_page(viewport={"width": 390, "height": 844}, user_agent=PHONE_AGENT,
                             is_mobile=True, has_touch=True)
    phone.goto(link)
    phone.click("#agree")
    phone.wait_for_selector("#phone-help:visible")
    assert phone.is_visible("#give-up") and not phone.is_visible("#check")
    assert not _scrolls(phone)
    assert (_participant(app, "phone1").status, _participant(app, "phone1").stage) == ("in_progress", "device")
    laptop = browser.new_page(viewport={"width": 1366, "height": 768})  # another browser, the same link
    laptop.goto(link)
    laptop.click("#check")
    laptop.wait_for_selector("#start")
    laptop.click("#start")
    laptop.wait_for_selector(READY)
    assert _participant(app, "phone1").stage == "trials"
    # only "I cannot use a computer" returns the study
    other = browser.new_page(viewport={"width": 390, "height": 844}, user_agent=PHONE_AGENT)
    other.goto(f"{base_url}/start?PROLIFIC_PID={prolific_pid('phone2')}&STUDY_ID=s1&SESSION_ID=x1")
    other.click("#agree")
    other.click("#give-up")
    other.click("#confirm-yes")  # after a confirmation
    other.wait_for_selector("h1:has-text('return')")
    assert (_participant(app, "phone2").status, _participant(app, "phone2").return_reason) == \
        ("returned", "no suitable device")


def test_the_screenshot_script_walks_every_page(bundle, tmp_path) -> None:  # noqa: ANN001
    """scripts/participant_screenshots.py in smoke mode: the smallest window, every page once."""
    import json
    import subprocess
    import sys

    size = f"{MIN_WINDOW['width']}x{MIN_WINDOW['height']}"
    result = subprocess.run([sys.executable, str(SCRIPT), "--bundle", str(bundle), "--out", str(tmp_path),
                             "--size", size], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["pages_scrolling"] == [] and measured["none_centre_offset_px"] == 0
    assert measured["query_vs_old"] > 1 and measured["reference_px"] >= 96  # never smaller than before
    names = {path.stem.removeprefix("participant-") for path in tmp_path.glob("*.png")}
    assert len(names) == 22 and {"15-catch-trial", "16-confirm-decline", "17-overlay-small-window-900x560",
                                 "18-overlay-touch-device", "19-timed-out", "20-phone-overlay-390x844",
                                 "21-phone-confirm-390x844", "22-phone-timed-out-390x844"} <= names
