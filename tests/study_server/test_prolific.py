"""`maco-study prolific` against a local stand-in of Prolific's API (prolific_standin.py): a draft
study, participants through the server, status, and reconcile's approvals, retries and resumption."""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from study_server.client import start_path
from study_server.config import DEFAULTS
from study_server.models import utcnow
from study_server.prolific.api import ProlificAPI, ProlificError, retry_after_seconds
from study_server.prolific.cli import prolific
from study_server.prolific.draft import minimum_maximum_time

from .conftest import Walker, make_app
from .prolific_standin import ProlificStandIn

TOKEN = "tok-3f9c2a7e51b04d6a"  # never to appear in any output or file
CODES = {"COMPLETION_CODE": "C1A2B3C4", "REVIEW_CODE": "REV1EW01", "NOCONSENT_CODE": "NOCONS01",
         "NO_DEVICE_CODE": "NODEV001"}
PACE = {key: DEFAULTS[key] for key in ("MIN_ANSWER_MS", "MIN_SESSION_S")}  # the study's floors, not the suite's 0


@pytest.fixture
def standin():  # noqa: ANN201
    api = ProlificStandIn(token=TOKEN)
    yield api
    api.close()


@pytest.fixture
def environment(monkeypatch, standin, tmp_path: Path):  # noqa: ANN001, ANN201
    monkeypatch.setenv("PROLIFIC_TOKEN", TOKEN)
    monkeypatch.setenv("PROLIFIC_API_URL", standin.url)
    monkeypatch.setenv("MACO_TARGET_PER_CONDITION", "3")
    monkeypatch.setenv("MACO_PARTICIPANT_TIMEOUT_MIN", "60")
    for key, code in CODES.items():
        monkeypatch.setenv(f"MACO_{key}", code)
    monkeypatch.chdir(tmp_path)  # reconcile's action log
    return tmp_path


def run(*args: str, input: str | None = None):  # noqa: A002, ANN201
    result = CliRunner().invoke(prolific, list(args), input=input, catch_exceptions=False)
    assert TOKEN not in result.output
    return result


def walk(app, pid: str, study_id: str, session_id: str, *, consent: bool = True,  # noqa: ANN001
         paced: bool = True) -> None:
    """One participant from Prolific's link to the end of the study: at a person's pace (the server's
    clock read 3 s later at each answer and 5 min later at the end), or at a script's."""
    walker = Walker(app, pid)
    assert walker.study.request("GET", start_path(pid, study_id, session_id)).status_code == 302
    walker.study.consent(agree=consent)
    if not consent:
        return
    walker.study.device()
    walker.study.instructions()
    with pytest.MonkeyPatch.context() as clock:
        if paced:
            clock.setattr("study_server.answers.utcnow", lambda: utcnow() + timedelta(seconds=3))
        walker.answer_all()
        if paced:
            clock.setattr("study_server.flow.utcnow", lambda: utcnow() + timedelta(minutes=5))
        assert walker.complete().status_code == 200


def test_a_study_from_draft_to_paid(environment: Path, standin: ProlificStandIn, sqlite_url: str,
                                    bundle: Path) -> None:
    app = make_app(sqlite_url, bundle, **CODES, **PACE)
    created = run("create", "--db", sqlite_url, "--url", "https://study.example.org", "--minutes", "12")
    assert created.exit_code == 0, created.output
    (study_id, study), = standin.studies.items()
    assert study["status"] == "UNPUBLISHED"  # a draft: published only when asked
    conditions = json.loads((bundle / "manifest.json").read_text())["conditions"]
    assert study["total_available_places"] == 3 * len(conditions)
    assert study["reward"] == 240  # 12 min at 1200 cents an hour
    assert study["external_study_url"] == ("https://study.example.org/start?PROLIFIC_PID={{%PROLIFIC_PID%}}"
                                           "&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}")
    actions = {c["code"]: (c["code_type"], [a["action"] for a in c["actions"]]) for c in study["completion_codes"]}
    assert actions == {"C1A2B3C4": ("COMPLETED", ["MANUALLY_REVIEW"]), "REV1EW01": ("OTHER", ["MANUALLY_REVIEW"]),
                       "NOCONS01": ("NO_CONSENT", ["REQUEST_RETURN"]),
                       "NODEV001": ("INCOMPATIBLE_DEVICE", ["REQUEST_RETURN"])}

    clean = []
    for _ in range(7):  # completed on the server and submitted with the code shown
        submission = standin.start_submission(study_id)
        walk(app, submission["participant_id"], study_id, submission["id"])
        standin.submit(submission["id"], CODES["COMPLETION_CODE"])
        clean.append(submission["id"])
    bot = standin.start_submission(study_id)  # a script: every image fetched, but at a script's speed
    walk(app, bot["participant_id"], study_id, bot["id"], paced=False)
    standin.submit(bot["id"], CODES["REVIEW_CODE"])
    declined = standin.start_submission(study_id)
    walk(app, declined["participant_id"], study_id, declined["id"], consent=False)
    standin.submit(declined["id"], CODES["NOCONSENT_CODE"])
    active = standin.start_submission(study_id)
    walk(app, active["participant_id"], study_id, active["id"], consent=False)  # an unpaid return on the server
    standin.submissions[active["id"]]["status"] = "RETURNED"
    still_working = standin.start_submission(study_id)
    leaked = standin.start_submission(study_id)  # a code entered without doing the study
    standin.submit(leaked["id"], CODES["COMPLETION_CODE"])
    walk(app, "b" * 24, study_id, "c" * 24)  # completed on the server, but never submitted on Prolific

    status = run("status", "--db", sqlite_url, "--json")
    assert status.exit_code == 0, status.output
    report = json.loads(status.output)
    assert report["study"]["places_taken"] == 12
    assert report["submissions"] == {"AWAITING REVIEW": 10, "RETURNED": 1, "ACTIVE": 1, "no submission": 1}
    assert report["verdicts"] == {"approve": 7, "review": 1, "return": 1, "settled": 1, "waiting": 1, "mismatch": 2}
    problems = {row["submission_id"]: row["problem"] for row in report["mismatches"]}
    assert "no record" in problems[leaked["id"]]
    assert "no submission" in problems[""]
    assert still_working["id"] not in problems

    dry = run("reconcile", "--db", sqlite_url)
    assert dry.exit_code == 0 and "7 submissions to approve" in dry.output
    review_line, = (line for line in dry.output.splitlines() if line.startswith("REVIEW"))
    evidence = json.loads(review_line.split(": ", 1)[1])
    assert bot["id"] in review_line and evidence["review"] == "fast_answers;fast_session"
    assert standin.transitions == []  # a dry run sends nothing

    # a 429 (honoured), then a 502 that Prolific applied anyway: the run stops, the next resumes
    standin.fail_next("POST", "/transition/", 429, {"Retry-After": "0"})
    standin.fail_next("POST", clean[3], 502, apply=True)
    first = run("reconcile", "--db", sqlite_url, "--approve", "--yes")
    assert first.exit_code == 1
    assert "HTTP 502" in first.output and "3 approved before it" in first.output
    second = run("reconcile", "--db", sqlite_url, "--approve", "--yes")
    assert second.exit_code == 0, second.output
    assert sorted(s for s, _ in standin.transitions) == sorted(clean)  # each once, and only those
    assert {action for _, action in standin.transitions} == {"APPROVE"}  # nothing rejected
    assert standin.submissions[leaked["id"]]["status"] == "AWAITING REVIEW"
    assert standin.submissions[bot["id"]]["status"] == "AWAITING REVIEW"  # the researcher decides
    log = [json.loads(line) for line in (environment / "prolific-actions.jsonl").read_text().splitlines()]
    assert len(log) == 6 and {row["action"] for row in log} == {"approve"}  # clean[3] was applied by the 502
    for path in environment.rglob("*"):
        assert not path.is_file() or TOKEN.encode() not in path.read_bytes()
    for _, _, headers in standin.requests:
        assert headers["Authorization"] == f"Token {TOKEN}"


def test_publish_only_when_asked(environment: Path, standin: ProlificStandIn, sqlite_url: str, bundle: Path) -> None:
    make_app(sqlite_url, bundle, **CODES)
    declined = run("create", "--db", sqlite_url, "--url", "https://study.example.org", "--minutes", "10",
                   "--publish", input="n\n")
    assert declined.exit_code == 0
    published = run("create", "--db", sqlite_url, "--url", "https://study.example.org", "--minutes", "10",
                    "--publish", "--yes")
    assert published.exit_code == 0
    assert sorted(s["status"] for s in standin.studies.values()) == ["ACTIVE", "UNPUBLISHED"]


def test_draft_refusals_are_one_line(environment: Path, standin: ProlificStandIn, sqlite_url: str, bundle: Path,
                                     monkeypatch) -> None:  # noqa: ANN001
    make_app(sqlite_url, bundle, **CODES)
    dry = run("create", "--db", sqlite_url, "--url", "https://study.example.org", "--dry-run")
    assert dry.exit_code == 1 and "no completed participant" in dry.output  # no pilot, no --minutes
    short = run("create", "--db", sqlite_url, "--url", "https://study.example.org", "--minutes", "30")
    assert short.exit_code == 1 and f"({minimum_maximum_time(30)} min)" in short.output
    assert run("create", "--db", sqlite_url, "--url", "http://study.example.org", "--minutes", "5").exit_code == 1
    monkeypatch.setenv("MACO_NO_DEVICE_CODE", CODES["NOCONSENT_CODE"])
    repeated = run("create", "--db", sqlite_url, "--url", "https://study.example.org", "--minutes", "5")
    assert repeated.exit_code == 1 and "more than one outcome" in repeated.output
    assert standin.studies == {}  # nothing was sent


def test_a_bad_token_is_one_line(environment: Path, standin: ProlificStandIn, sqlite_url: str, bundle: Path,
                                 monkeypatch) -> None:  # noqa: ANN001
    make_app(sqlite_url, bundle, **CODES)
    monkeypatch.setenv("PROLIFIC_TOKEN", "not-the-token")
    result = run("create", "--db", sqlite_url, "--url", "https://study.example.org", "--minutes", "5")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == ("Error: Prolific refused the API token (HTTP 401): set "
                                                      "PROLIFIC_TOKEN to a valid token of the workspace that owns "
                                                      "the study")
    assert "not-the-token" not in result.output
    monkeypatch.delenv("PROLIFIC_TOKEN")
    missing = run("status", "--db", sqlite_url, "--study-id", "x")
    assert missing.exit_code == 1 and "set PROLIFIC_TOKEN" in missing.output


def test_rate_limit_waits_for_retry_after(standin: ProlificStandIn) -> None:
    waits: list[float] = []
    api = ProlificAPI(TOKEN, standin.url, sleep=waits.append)
    standin.fail_next("GET", "/users/me/", 429, {"Retry-After": "7"})
    standin.fail_next("GET", "/users/me/", 503)  # a read is retried after a 5xx
    assert api.me()["id"] == "researcher"
    assert waits[0] == 7.0 and len(waits) == 2
    standin.fail_next("GET", "/users/me/", 429, {"Retry-After": "3600"})
    with pytest.raises(ProlificError, match="asks to wait 3600 s"):
        api.me()
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", default=5.0) == 0.0  # a date in the past


def test_pagination_reads_every_page(standin: ProlificStandIn) -> None:
    api = ProlificAPI(TOKEN, standin.url)
    study = api.create_study({"name": "n", "description": "d", "external_study_url": "https://x.org/start",
                              "completion_codes": [], "total_available_places": 11,
                              "estimated_completion_time": 1, "reward": 10})
    ids = [standin.start_submission(study["id"])["id"] for _ in range(11)]
    assert [s["id"] for s in api.submissions(study["id"])] == ids  # pages of 4, 4 and 3
    pages = [path for method, path, _ in standin.requests if path.startswith("/api/v1/submissions/")]
    assert len(pages) == 3


def test_the_standin_refuses_a_body_off_the_schema(standin: ProlificStandIn) -> None:
    api = ProlificAPI(TOKEN, standin.url)
    with pytest.raises(ProlificError, match="HTTP 400"):
        api.create_study({"name": "n", "description": "d", "external_study_url": "https://x.org",
                          "completion_codes": [{"code": "A", "code_type": "FINISHED", "actions": []}],
                          "total_available_places": 1, "estimated_completion_time": 1, "reward": 1})
    with pytest.raises(ProlificError, match="unknown fields: places"):
        api.create_study({"name": "n", "description": "d", "external_study_url": "https://x.org",
                          "completion_codes": [], "places": 3, "total_available_places": 1,
                          "estimated_completion_time": 1, "reward": 1})
