"""Screenshots of every participant page, as a participant sees them (docs/screenshots/).

    python scripts/participant_screenshots.py --bundle BUNDLE [--out docs/screenshots] [--size 1366x768]

Serves BUNDLE from a throw-away SQLite database on 127.0.0.1 and walks participants through it in
Debian's Chromium (Playwright, never `playwright install`): consent, screen check (and a phone),
instructions, a practice trial and its feedback, the pause before the main trials, a main trial,
a catch trial, a break, the comment page, the end, the confirmation before declining and the
"please return" page. A trial of the `none` condition too. Then the window rule and the time-out
(issue 23): the overlay of a window shrunk to 900x560 mid-study and of a touch-only device at the
window size, the time-out page; and at 390x844 a phone: the screen check, the same link after the
check on a computer (the overlay), its "I cannot use a computer" confirmation, the time-out page. The PNGs are quantized to 128 colours to stay small. Any
bundle works; the demo's (`maco-study stimuli build demo/study_demo.toml --out BUNDLE`) has
scikit-image's photos. The last line printed is one JSON object: the rendered query and reference
sizes at that window against the fixed 180 px / 96 px of before, and the pages that scroll.
A window below the screen check's minimum stops at the screen check. With --demo, on a `maco-study demo`
bundle, only the demo's pages instead (docs/demo.md): the instructions and a main trial in the MACO
condition, a practice trial in the natural condition (demo-task-*.png).
"""
from __future__ import annotations

import argparse
import json
import itertools
import logging
import sys
import tempfile
import threading
from datetime import timedelta
from pathlib import Path
from typing import Iterator

from PIL import Image
from playwright.sync_api import Page, sync_playwright
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

from study_server.app import create_app
from study_server.bundle import import_bundle
from study_server.db import make_engine, upgrade
from study_server.models import Participant, Trial, utcnow

CHROMIUM = "/usr/bin/chromium"
PHONE_AGENT = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 Safari/604.1"
# an iPad asking for desktop sites: a Mac user agent, a touch screen and no mouse
TABLET_AGENT = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Version/17.0 Safari/605.1.15"
READY = ".answers button:enabled"


def serve(bundle: Path, folder: Path) -> str:
    global engine
    url = f"sqlite:///{folder / 'study.db'}"
    upgrade(url)
    with Session(make_engine(url)) as session:
        import_bundle(session, bundle)
        session.commit()
    app = create_app({"DATABASE_URL": url, "BUNDLE_DIR": str(bundle), "SECRET_KEY": "screenshots",
                      "COMPLETION_CODE": "C0MPL3TE", "NOCONSENT_CODE": "NOCONSENT", "BREAK_EVERY": 2,
                      "RATE_LIMIT_ENABLED": 0, "COMPLETION_URL": "/study?cc={code}",
                      # a script answers the moment it can: the pace rules off, so that the pages
                      # show what a person sees (the done page with the completion code)
                      "MIN_RT_MS": 0, "MIN_ANSWER_MS": 0, "MIN_SESSION_S": 0})
    engine = app.extensions["maco"].engine
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}"


# The page does not fit: it scrolls, a visible button lies (partly) outside the window, or a board's
# content (the trial, the instructions' example) spills out of it. The browser tests use it too.
SCROLLS = """() => document.documentElement.scrollHeight > window.innerHeight
    || document.documentElement.scrollWidth > window.innerWidth
    || [...document.querySelectorAll("button, a.button")].some((b) => {
         const r = b.getBoundingClientRect();
         return r.height > 0 && (r.bottom > window.innerHeight || r.right > window.innerWidth); })
    || [...document.querySelectorAll(".board")].some((b) => b.offsetParent !== null
         && (b.scrollHeight > b.clientHeight + 1 || b.scrollWidth > b.clientWidth + 1))"""
OLD_QUERY_PX, OLD_REFERENCE_PX = 180, 96  # the fixed sizes before issue 12
scrolling: list[str] = []  # pages that scroll
engine = None  # the served database's (set by serve)


def pid(k: int) -> str:
    """A Prolific-shaped id (24 hex digits)."""
    return f"5c{k:022x}"


def current_kind(prolific_pid: str) -> str:
    """The kind of the participant's trial on screen (the first unanswered one)."""
    with Session(engine) as session:
        return session.scalar(select(Trial.kind).join(Participant).where(
            Participant.prolific_pid == prolific_pid, Trial.answer_id.is_(None)).order_by(Trial.position))


def time_out(prolific_pid: str) -> None:
    """The participant silent for two hours, beyond any PARTICIPANT_TIMEOUT_MIN of the screenshots."""
    with Session(engine) as session:
        session.execute(update(Participant).where(Participant.prolific_pid == prolific_pid)
                        .values(last_seen_at=utcnow() - timedelta(hours=2)))
        session.commit()
sizes: dict[str, float] = {}


def measure(page: Page, prefix: str) -> None:
    """The rendered query and reference sizes of the trial on screen, against the old fixed ones."""
    left, right = page.locator("#left").bounding_box(), page.locator("#right").bounding_box()
    height = page.viewport_size["height"]
    sizes[f"{prefix}query_px"] = round(left["height"])
    sizes[f"{prefix}query_height_fraction"] = round(left["height"] / height, 3)
    sizes[f"{prefix}query_vs_old"] = round(left["height"] / OLD_QUERY_PX, 2)
    sizes[f"{prefix}centre_offset_px"] = round((left["x"] + right["x"] + right["width"]) / 2
                                               - page.viewport_size["width"] / 2, 1)
    if page.locator("#references img").count():
        tile = page.locator("#references img").first.bounding_box()["height"]
        sizes[f"{prefix}reference_px"] = round(tile)
        sizes[f"{prefix}reference_vs_old"] = round(tile / OLD_REFERENCE_PX, 2)


def save(page: Page, out: Path, name: str, layout: bool = True, prefix: str = "participant-") -> None:
    """The page as PREFIX-NAME.png; with `layout`, noted in `scrolling` when it does not fit (a window under
    the minimum, where the overlay covers a trial that cannot fit, is saved without)."""
    if layout and page.evaluate(SCROLLS):
        scrolling.append(name)
    path = out / f"{prefix}{name}.png"
    page.screenshot(path=str(path))
    Image.open(path).convert("RGB").quantize(128).save(path, optimize=True)
    print(path, f"{path.stat().st_size // 1024} KB", file=sys.stderr)


def at_instructions(browser, base_url: str, viewport: dict[str, int], with_references: bool,  # noqa: ANN001
                    pids: Iterator[str], shots: Path | None = None, suffix: str = "") -> tuple[Page, str]:
    """A new participant at the instructions, in a condition with (or without) references, and its
    Prolific id; the balanced assignment gives each condition once in every few participants."""
    for prolific_pid in pids:
        page = browser.new_page(viewport=viewport)
        page.goto(f"{base_url}/start?PROLIFIC_PID={prolific_pid}&STUDY_ID=s&SESSION_ID=x")
        if shots:
            save(page, shots, f"01-consent{suffix}")
        page.click("#agree")
        page.wait_for_selector("#check")
        if shots:
            save(page, shots, f"02-screen-check{suffix}")
        page.click("#check")
        page.wait_for_selector("#start")
        if page.locator(".stage.no-references").count() != with_references:
            page.wait_for_load_state("networkidle")
            return page, prolific_pid
        page.close()
    raise RuntimeError("no participant got the condition asked for")


def at_condition(browser, base_url: str, viewport: dict[str, int], pids: Iterator[str], condition: str) -> Page:  # noqa: ANN001
    """A new participant at the instructions in ``condition`` (the balanced assignment gives each
    condition once in every few participants)."""
    for prolific_pid in pids:
        page = browser.new_page(viewport=viewport)
        page.goto(f"{base_url}/start?PROLIFIC_PID={prolific_pid}&STUDY_ID=s&SESSION_ID=x")
        page.click("#agree")
        page.wait_for_selector("#check")
        page.click("#check")
        page.wait_for_selector("#start")
        with Session(engine) as session:
            assigned = session.scalar(select(Participant.condition).where(Participant.prolific_pid == prolific_pid))
        if assigned == condition:
            page.wait_for_load_state("networkidle")
            return page
        page.close()
    raise RuntimeError(f"no participant got the condition {condition!r}")


def demo_pages(browser, base_url: str, viewport: dict[str, int], pids: Iterator[str], out: Path) -> None:  # noqa: ANN001
    """The demo's pages (docs/demo.md): the instructions and the first main trial in the MACO
    condition, and a practice trial in the natural condition, as demo-task-*.png."""
    page = at_condition(browser, base_url, viewport, pids, "maco")
    save(page, out, "instructions", prefix="demo-task-")
    page.click("#start")
    while True:  # the practice rounds, answered as walk() does, up to the first main trial
        page.wait_for_selector(f"{READY}, #feedback-next:visible, #pause-continue:visible")
        if page.locator("#feedback-next:visible").count():
            page.keyboard.press("Enter")
        elif page.locator("#pause-continue:visible").count():
            main_next = "real trials" in page.inner_text("#pause-title")
            page.click("#pause-continue")
            if main_next:
                page.wait_for_selector(READY)
                save(page, out, "main-trial", prefix="demo-task-")
                break
        else:
            page.keyboard.press("6")
            page.wait_for_selector(READY, state="detached")
    natural = at_condition(browser, base_url, viewport, pids, "natural")
    natural.click("#start")
    natural.wait_for_selector(READY)
    save(natural, out, "natural-trial", prefix="demo-task-")


def walk(page: Page, prolific_pid: str, out: Path, suffix: str) -> None:
    save(page, out, f"03-instructions{suffix}")
    page.click("#start")
    page.wait_for_selector(READY)
    save(page, out, f"04-practice-trial{suffix}")
    page.keyboard.press("1")
    page.wait_for_selector("#feedback-next:visible")
    save(page, out, f"05-practice-feedback{suffix}")
    shots = {"main": f"06-pause-before-main{suffix}", "break": f"08-break{suffix}",
             "catch": f"15-catch-trial{suffix}"}
    while True:  # practice (right or wrong), then main trials until the comment page
        page.wait_for_selector(f"{READY}, #feedback-next:visible, #pause-continue:visible, #finish")
        if page.locator("#finish").count():
            break
        if page.locator("#feedback-next:visible").count():
            page.keyboard.press("Enter")
        elif page.locator("#pause-continue:visible").count():
            kind = "main" if "real trials" in page.inner_text("#pause-title") else "break"
            if shots.get(kind):
                save(page, out, shots.pop(kind))
                if kind == "main":
                    page.click("#pause-continue")
                    page.wait_for_selector(READY)
                    save(page, out, f"07-main-trial{suffix}")
                    measure(page, "")
                    continue
            page.click("#pause-continue")
        else:
            if "catch" in shots and current_kind(prolific_pid) == "catch":
                save(page, out, shots.pop("catch"))
            page.keyboard.press("6")
            page.wait_for_selector(READY, state="detached")
    save(page, out, f"09-comment{suffix}")
    page.click("#finish")
    page.wait_for_selector("h1:has-text('Thank you')")
    save(page, out, f"10-done{suffix}")


def window_and_time_out(browser, base_url: str, viewport: dict[str, int], pids: Iterator[str],  # noqa: ANN001
                        out: Path, suffix: str) -> None:
    """The overlay of a window shrunk mid-study and of a touch-only device, and the time-out page."""
    page, prolific_pid = at_instructions(browser, base_url, viewport, True, pids)
    page.click("#start")
    page.wait_for_selector(READY)
    page.set_viewport_size({"width": 900, "height": 560})
    page.wait_for_selector("#window-overlay:visible")
    save(page, out, f"17-overlay-small-window-900x560{suffix}", layout=False)
    page.set_viewport_size(viewport)
    page.wait_for_selector(READY)
    tablet = browser.new_context(viewport=viewport, user_agent=TABLET_AGENT, has_touch=True).new_page()
    tablet.goto(f"{base_url}/start?PROLIFIC_PID={prolific_pid}&STUDY_ID=s&SESSION_ID=x")
    tablet.wait_for_selector("#window-overlay:visible")
    save(tablet, out, f"18-overlay-touch-device{suffix}")
    time_out(prolific_pid)
    page.reload()
    page.wait_for_selector("h1:has-text('timed out')")
    save(page, out, f"19-timed-out{suffix}")


def phone_pages(browser, base_url: str, pids: Iterator[str], out: Path) -> None:  # noqa: ANN001
    """At 390x844: a phone at the screen check; the same link on a phone after the check on a
    computer (the overlay) and its confirmation; the time-out page."""
    phone_size = {"width": 390, "height": 844}
    phone = browser.new_context(viewport=phone_size, user_agent=PHONE_AGENT, has_touch=True,
                                is_mobile=True).new_page()
    phone.goto(f"{base_url}/start?PROLIFIC_PID={pid(2000)}&STUDY_ID=s&SESSION_ID=x")
    phone.click("#agree")
    phone.wait_for_selector("#phone-help:visible")
    save(phone, out, "12-phone")
    computer, prolific_pid = at_instructions(browser, base_url, {"width": 1366, "height": 768}, True, pids)
    computer.click("#start")
    computer.wait_for_selector(READY)
    phone.goto(f"{base_url}/start?PROLIFIC_PID={prolific_pid}&STUDY_ID=s&SESSION_ID=x")
    phone.wait_for_selector("#window-overlay:visible")
    save(phone, out, "20-phone-overlay-390x844", layout=False)
    phone.click("#overlay-give-up")
    phone.wait_for_selector("#confirm-end[open]")
    save(phone, out, "21-phone-confirm-390x844", layout=False)
    phone.click("#confirm-no")
    time_out(prolific_pid)
    phone.reload()
    phone.wait_for_selector("h1:has-text('timed out')")
    save(phone, out, "22-phone-timed-out-390x844")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--size", default="1366x768", help="viewport WIDTHxHEIGHT")
    parser.add_argument("--suffix", default="", help="appended to every file name (e.g. -1280x720)")
    parser.add_argument("--demo", action="store_true",
                        help="only the demo's pages (a `maco-study demo` bundle): demo-task-instructions.png, "
                             "demo-task-main-trial.png (MACO), demo-task-natural-trial.png")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    args.out.mkdir(parents=True, exist_ok=True)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        base_url = serve(args.bundle, Path(folder))
        # without navigator.webdriver, which would send the session to review (study_server/speed.py)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-blink-features=AutomationControlled"])
        viewport = {"width": width, "height": height}
        pids = (pid(k) for k in itertools.count())
        if args.demo:
            demo_pages(browser, base_url, viewport, pids, args.out)
            browser.close()
            return
        walk(*at_instructions(browser, base_url, viewport, True, pids, args.out, args.suffix), args.out, args.suffix)
        declined = browser.new_page(viewport=viewport)
        declined.goto(f"{base_url}/start?PROLIFIC_PID={pid(1000)}&STUDY_ID=s&SESSION_ID=x")
        declined.click("#decline")
        declined.wait_for_selector("#confirm-end[open]")
        save(declined, args.out, f"16-confirm-decline{args.suffix}")
        declined.click("#confirm-yes")
        declined.wait_for_selector("h1:has-text('return')")
        save(declined, args.out, f"11-returned-no-consent{args.suffix}")
        window_and_time_out(browser, base_url, viewport, pids, args.out, args.suffix)
        phone_pages(browser, base_url, pids, args.out)
        other, _ = at_instructions(browser, base_url, viewport, False, pids)
        save(other, args.out, f"13-instructions-condition-none{args.suffix}")
        other.click("#start")
        other.wait_for_selector(READY)
        save(other, args.out, f"14-trial-condition-none{args.suffix}")
        measure(other, "none_")
        browser.close()
    # the last line: the measured sizes and their ratios to the old fixed ones, and what scrolls
    print(json.dumps({"window": args.size, **sizes, "pages_scrolling": scrolling}))


if __name__ == "__main__":
    main()
