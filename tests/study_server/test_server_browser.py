"""One participant in a real browser (Playwright + Debian's Chromium), /start to the Prolific redirect.

Needs /usr/bin/chromium and the playwright package (never `playwright install`):
CI installs both; locally the test skips with the reason when either is missing.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from study_server.models import Participant, Trial

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed")


@pytest.fixture
def live_server(live_server_factory):  # noqa: ANN001, ANN201
    return live_server_factory(INTER_TRIAL_MS=0)


def test_one_participant_in_chromium(live_server, tmp_path: Path) -> None:  # noqa: ANN001
    app, base_url = live_server
    engine = app.extensions["maco"].engine
    pid = "5f0c1e2d3b4a59687766554a"

    def db_state() -> tuple[Participant | None, list[Trial]]:
        with Session(engine) as session:
            p = session.scalar(select(Participant).where(Participant.prolific_pid == pid))
            trials = [] if p is None else list(session.scalars(
                select(Trial).where(Trial.participant_id == p.id).order_by(Trial.position)))
            return p, trials

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        redirected: list[str] = []

        lost_replies: list[str] = []
        throttled: list[str] = []

        def route(request_route) -> None:  # noqa: ANN001 - nothing leaves 127.0.0.1
            url = request_route.request.url
            if url == f"{base_url}/api/answer" and len(lost_replies) < 2:
                # the answer reaches the server but its reply is lost: the page must retry
                lost_replies.append(request_route.fetch().text())
                request_route.abort("connectionreset")
            elif (url in (f"{base_url}/api/consent", f"{base_url}/api/trial", f"{base_url}/api/answer")
                  and url not in throttled and (lost_replies or url.endswith("/consent"))):
                # a rate limit's 429 (as study_server.limits sends it): the page waits and sends again
                throttled.append(url)
                request_route.fulfill(status=429, headers={"Retry-After": "1"}, content_type="application/json",
                                      body='{"error": "too many requests", "retry_after_s": 1}')
            elif url.startswith(base_url):
                request_route.continue_()
            else:
                redirected.append(url)
                # the completion only counts if every answer was stored before the redirect
                p, trials = db_state()
                ok = p.status == "completed" and all(t.answer_id for t in trials)
                request_route.fulfill(status=200, content_type="text/html",
                                      body=f"<title>{'prolific-ok' if ok else 'too-early'}</title>")

        page.route("**/*", route)
        page.goto(f"{base_url}/start?PROLIFIC_PID={pid}&STUDY_ID=study1&SESSION_ID=sess1")
        page.click("#agree")
        page.wait_for_selector("#check")
        page.click("#check")
        page.wait_for_selector("#start")
        page.click("#start")

        answers = 0
        reloaded = False
        # answer buttons are enabled once the images are on screen; practice feedback and the
        # pause page before the main trials wait for their button
        trial_ready = ".answers button:enabled, #finish, #feedback-next:visible, #pause-continue:visible"
        while (ready := page.wait_for_selector(trial_ready, timeout=20_000).get_attribute("id")) != "finish":
            if ready == "pause-continue":  # the page says how far along; the corner names no trial
                assert page.text_content("#progress") == ""
            if ready in ("feedback-next", "pause-continue"):
                page.click(f"#{ready}")
                page.wait_for_selector(f"#{ready}", state="hidden")
                continue
            if answers == 6 and not reloaded:  # reload in the middle: the same trial comes back
                before = next(t.position for t in db_state()[1] if t.answer_id is None)
                page.reload()
                reloaded = True
                page.wait_for_selector(trial_ready)
                assert next(t.position for t in db_state()[1] if t.answer_id is None) == before
                page.screenshot(path=str(tmp_path / "trial.png"))
            current = next(t for t in db_state()[1] if t.answer_id is None)
            done_before = sum(t.answer_id is not None and t.kind != "practice" for t in db_state()[1])
            if current.kind != "practice":
                assert page.text_content("#progress") == f"trial {done_before + 1} of 10"
            if answers % 2 == 0:  # keyboard: 1 = left very sure ... 6 = right very sure
                page.keyboard.press("1" if current.correct_side == "left" else "6")
            else:  # mouse
                page.click(f'.answers button[data-side="{current.correct_side}"][data-confidence="2"]')
            answers += 1
            # taken (a selector, not wait_for_function: the CSP forbids evaluating strings)
            page.wait_for_selector(".answers button:enabled", state="detached")

        page.wait_for_selector("#finish")
        page.fill("#comment", "all good")
        page.click("#finish")
        page.wait_for_url(lambda url: not url.startswith(base_url), timeout=20_000)
        assert page.title() == "prolific-ok"
        browser.close()

    # a browser driven by Playwright reports navigator.webdriver: it finishes, with the review code
    assert redirected == ["https://app.prolific.com/submissions/complete?cc=CHANGE-ME-REVIEW"]
    assert len(lost_replies) == 2 and all('"stored":true' in r for r in lost_replies)
    assert sorted(throttled) == [f"{base_url}/api/{name}" for name in ("answer", "consent", "trial")]
    p, trials = db_state()
    assert (p.status, p.comment, p.window_width, p.window_height) == ("completed", "all good", 1280, 800)
    assert answers == len(trials) == 2 + 10
    assert all(t.chosen_side == t.correct_side for t in trials)
    assert {t.confidence for t in trials} == {2, 3}
    assert all(0 < t.rt_ms < 60_000 for t in trials)
    assert all((t.window_width, t.window_height) == (1280, 800) for t in trials)
    assert p.review == "webdriver" and all(t.webdriver for t in trials)
    assert [t.answer_input for t in trials] == ["key", "pointer"] * 6  # as pressed and clicked above
    assert (tmp_path / "trial.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Participant)) == 1
