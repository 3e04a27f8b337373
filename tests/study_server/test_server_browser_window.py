"""The window rule, the confirmation before ending, and the time-out page in a real browser (issue 23).

Playwright + Debian's Chromium, as test_server_browser.py (skipped when either is missing).
"""
from __future__ import annotations

import os
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from study_server.models import Participant, Trial, utcnow

from .test_server_browser import CHROMIUM, CHROMIUM_FLAGS

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed")

DESKTOP = {"width": 1280, "height": 800}
READY = ".answers button:enabled"
# an iPad: Safari asks for desktop sites (a Mac user agent), a touch screen, no mouse
IPAD = {"user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                      "Version/17.0 Safari/605.1.15",
        "viewport": {"width": 1180, "height": 820}, "has_touch": True}
PHONE = {"user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
                       "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
         "viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True}


@pytest.fixture
def served(live_server_factory):  # noqa: ANN001, ANN201
    return live_server_factory(INTER_TRIAL_MS=0)


@pytest.fixture
def browser():  # noqa: ANN201
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield browser
        browser.close()


def _participant(app, pid: str) -> tuple[Participant, list[Trial]]:  # noqa: ANN001
    with Session(app.extensions["maco"].engine) as session:
        p = session.scalar(select(Participant).where(Participant.prolific_pid == pid))
        trials = list(session.scalars(select(Trial).where(Trial.participant_id == p.id).order_by(Trial.position)))
        session.expunge_all()
        return p, trials


def _answered(app, pid: str) -> list[Trial]:  # noqa: ANN001
    return [t for t in _participant(app, pid)[1] if t.answer_id is not None]


def _start(page, base_url: str, pid: str) -> None:  # noqa: ANN001
    page.goto(f"{base_url}/start?PROLIFIC_PID={pid}&STUDY_ID=study1&SESSION_ID=sess1")


def _to_trials(page, base_url: str, pid: str) -> None:  # noqa: ANN001
    _start(page, base_url, pid)
    page.click("#agree")
    page.click("#check")
    page.click("#start")
    page.wait_for_selector(READY)


def _centre(page, selector: str) -> tuple[float, float]:  # noqa: ANN001
    box = page.locator(selector).bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def test_a_window_shrunk_mid_study_is_covered_until_it_is_enlarged(served, browser) -> None:  # noqa: ANN001
    app, base_url = served
    pid = "1f0c1e2d3b4a59687766554a"
    page = browser.new_page(viewport=DESKTOP)
    _to_trials(page, base_url, pid)
    page.keyboard.press("1")  # one practice answer in the full window
    page.wait_for_selector("#feedback-next:visible").click()
    page.wait_for_selector(READY)
    assert len(_answered(app, pid)) == 1
    left = '.answers button[data-side="left"][data-confidence="2"]'
    x, y = _centre(page, left)

    page.set_viewport_size({"width": 700, "height": 450})
    overlay = page.wait_for_selector("#window-overlay", state="visible")
    assert "Please enlarge your browser window" in overlay.text_content()
    assert page.text_content("#overlay-size") == "700×450"
    assert page.text_content("#overlay-give-up") == "I cannot enlarge my window"
    assert page.locator(".answers button:enabled").count() == 0
    page.keyboard.press("1")
    page.keyboard.press("6")
    page.mouse.click(x * 700 / 1280, y * 450 / 800)  # where the button was: the overlay takes it
    page.mouse.click(x, y)
    page.wait_for_timeout(500)  # what a stored answer would need (no wait can see nothing happen)
    assert len(_answered(app, pid)) == 1

    page.set_viewport_size({"width": 1000, "height": 650})  # at least 940x600: the trial is back
    page.wait_for_selector("#window-overlay", state="hidden")
    page.wait_for_selector(READY).click()
    page.wait_for_selector("#feedback-next:visible")
    answered = _answered(app, pid)
    assert len(answered) == 2 and (answered[1].window_width, answered[1].window_height) == (1000, 650)


def test_a_touch_tablet_is_sent_to_the_computer_page(served, browser) -> None:  # noqa: ANN001
    app, base_url = served
    pid = "2f0c1e2d3b4a59687766554a"
    tablet = browser.new_context(**IPAD).new_page()
    _start(tablet, base_url, pid)
    tablet.click("#agree")
    tablet.wait_for_selector("#phone-help", state="visible")
    assert "Please continue on a computer" in tablet.text_content("#phone-help")
    assert tablet.locator("#check").is_hidden()
    assert tablet.text_content("#give-up") == "I cannot use a computer"
    assert _participant(app, pid)[0].stage == "device"  # not passed: nothing was checked


def test_a_phone_after_the_check_on_a_computer_gets_the_overlay_and_stores_no_tap(served, browser) -> None:  # noqa: ANN001
    app, base_url = served
    pid = "3f0c1e2d3b4a59687766554a"
    _to_trials(browser.new_page(viewport=DESKTOP), base_url, pid)
    phone = browser.new_context(**PHONE).new_page()
    _start(phone, base_url, pid)  # the same Prolific link on a phone
    overlay = phone.wait_for_selector("#window-overlay", state="visible")
    assert "Please continue on a computer" in overlay.text_content()
    assert phone.text_content("#overlay-give-up") == "I cannot use a computer"
    phone.wait_for_load_state("networkidle")  # the trial was sent: it lies under the overlay, not laid out
    assert phone.locator(".board").is_hidden()
    for x in (20, 195, 370):  # taps all over the screen, where the answer buttons would be included
        for y in (100, 420, 700, 830):
            phone.touchscreen.tap(x, y)
    phone.wait_for_timeout(500)
    assert _answered(app, pid) == []
    # the overlay fits the phone's screen: nothing wider than it
    box = phone.locator("#window-overlay .panel").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390 and box["y"] >= 0


def test_every_ending_asks_for_confirmation(served, browser) -> None:  # noqa: ANN001
    app, base_url = served
    # "I do not agree": No keeps the consent page, Yes ends the study
    page = browser.new_page(viewport=DESKTOP)
    _start(page, base_url, "4f0c1e2d3b4a59687766554a")
    page.click("#decline")
    dialog = page.wait_for_selector("#confirm-end", state="visible")
    assert "You chose not to take part" in dialog.text_content()
    page.click("#confirm-no")
    page.wait_for_selector("#confirm-end", state="hidden")
    assert _participant(app, "4f0c1e2d3b4a59687766554a")[0].stage == "consent"
    page.click("#decline")
    page.keyboard.press("Escape")  # Escape is No too
    page.wait_for_selector("#confirm-end", state="hidden")
    assert _participant(app, "4f0c1e2d3b4a59687766554a")[0].stage == "consent"
    page.click("#decline")
    page.click("#confirm-yes")
    page.wait_for_selector("text=Please return the study")
    assert _participant(app, "4f0c1e2d3b4a59687766554a")[0].status == "returned"

    # "I cannot use a computer" on the screen check (a tablet)
    tablet = browser.new_context(**IPAD).new_page()
    _start(tablet, base_url, "5f0c1e2d3b4a59687766554b")
    tablet.click("#agree")
    tablet.click("#give-up")
    tablet.wait_for_selector("#confirm-end", state="visible")
    tablet.click("#confirm-no")
    assert _participant(app, "5f0c1e2d3b4a59687766554b")[0].stage == "device"
    tablet.click("#give-up")
    tablet.click("#confirm-yes")
    tablet.wait_for_selector("text=Please return the study")
    assert _participant(app, "5f0c1e2d3b4a59687766554b")[0].return_reason == "no suitable device"

    # "I cannot enlarge my window" on the trials page's overlay
    page = browser.new_page(viewport=DESKTOP)
    _to_trials(page, base_url, "6f0c1e2d3b4a59687766554c")
    page.set_viewport_size({"width": 800, "height": 500})
    page.click("#overlay-give-up")
    page.wait_for_selector("#confirm-end", state="visible")
    page.click("#confirm-no")
    page.wait_for_selector("#confirm-end", state="hidden")
    assert _participant(app, "6f0c1e2d3b4a59687766554c")[0].stage == "trials"
    page.click("#overlay-give-up")
    page.click("#confirm-yes")
    page.wait_for_selector("text=Please return the study")
    p, trials = _participant(app, "6f0c1e2d3b4a59687766554c")
    assert (p.status, p.return_reason) == ("returned", "no suitable device")
    assert not any(t.answer_id for t in trials)


def test_a_participant_back_after_the_time_out_sees_the_time_out_page(served, browser) -> None:  # noqa: ANN001
    app, base_url = served
    pid = "7f0c1e2d3b4a59687766554a"
    page = browser.new_page(viewport=DESKTOP)
    _to_trials(page, base_url, pid)
    with Session(app.extensions["maco"].engine) as session:  # away for two hours (the time-out is 90 min)
        session.execute(update(Participant).where(Participant.prolific_pid == pid)
                        .values(last_seen_at=utcnow() - timedelta(hours=2)))
        session.commit()
    page.keyboard.press("1")  # the tab left open answers: refused, and the page says why
    page.wait_for_selector("text=This study session has timed out")
    assert "return the submission" in page.text_content("main")
    assert _answered(app, pid) == []
    _start(page, base_url, pid)  # the Prolific link again: the same page, no resume
    page.wait_for_selector("text=This study session has timed out")
    assert page.locator(".answers").count() == 0
    assert _participant(app, pid)[0].status == "timed_out"
