"""`maco-study prolific create|status|reconcile` (docs/prolific.md)."""
from __future__ import annotations

import json
from collections import Counter
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import click

from ..cli import DB_OPTION

STUDY_ID_SETTING = "prolific_study_id:{study}"  # the Prolific study created for an imported study
STUDY_OPTION = click.option("--study", "study_name", default=None,
                            help="the imported study's name (default: the only one in the database)")
STUDY_ID_OPTION = click.option("--study-id", default=None,
                               help="Prolific's study id (default: the one `create` made for this study)")


@click.group()
def prolific() -> None:
    """Create, watch and pay the study on Prolific: a draft study, its status against the server's records,
    and the approvals.

    The API token comes from PROLIFIC_TOKEN and is never written anywhere (docs/prolific.md)."""


@prolific.command()
@DB_OPTION
@STUDY_OPTION
@click.option("--url", "public_url", required=True, help="the study server's public address, e.g. https://study.example.org")
@click.option("--minutes", type=click.IntRange(1), default=None,
              help="estimated time (default: the median time of the participants who completed, e.g. a pilot)")
@click.option("--places", type=click.IntRange(1), default=None,
              help="places to open (default: the sum of TARGET_PER_CONDITION)")
@click.option("--dry-run", is_flag=True, help="print the draft that would be sent, and send nothing")
@click.option("--publish", is_flag=True, help="publish the draft after creating it (asks first)")
@click.option("--yes", is_flag=True, help="publish without asking")
def create(db_url: str, study_name: str | None, public_url: str, minutes: int | None, places: int | None,
           dry_run: bool, publish: bool, yes: bool) -> None:
    """Create a draft study on Prolific from the server's configuration; publish only when asked."""
    from ..config import load_config
    from ..models import Setting
    from .draft import draft_body, estimated_minutes
    from .records import completed_minutes

    cfg = load_config()
    with _database(db_url) as session:
        study, records = _study_and_records(session, study_name, cfg)
        try:
            if minutes is None:
                minutes = estimated_minutes(completed_minutes(records))
                click.echo(f"estimated time: {minutes} min, the median of {len(completed_minutes(records))} "
                           "completed participants in the database")
            body = draft_body(cfg, study_name=study.name, conditions=json.loads(study.manifest_json)["conditions"],
                              public_url=public_url, minutes=minutes, places=places)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"the draft study ({body['total_available_places']} places, {minutes} min, reward "
                   f"{body['reward']} cents = {cfg['PROLIFIC_HOURLY_RATE']} cents/hour):")
        click.echo(json.dumps(body, indent=2))
        if dry_run:
            return
        api = _api()
        created = _call(api.create_study, body)
        setting_key = STUDY_ID_SETTING.format(study=study.name)
        existing = session.get(Setting, setting_key)
        if existing is None:
            session.add(Setting(key=setting_key, value=created["id"]))
        else:
            existing.value = created["id"]
        session.commit()
        click.echo(f"created draft study {created['id']} (status {created.get('status', 'UNPUBLISHED')}); "
                   "open it on Prolific to check it, or publish with --publish")
        if publish and (yes or click.confirm(f"Publish study {created['id']} to participants now?", default=False)):
            _call(api.publish_study, created["id"])
            click.echo(f"published study {created['id']}")


@prolific.command()
@DB_OPTION
@STUDY_OPTION
@STUDY_ID_OPTION
@click.option("--json", "as_json", is_flag=True, help="one JSON object instead of the table")
def status(db_url: str, study_name: str | None, study_id: str | None, as_json: bool) -> None:
    """Places taken, submissions by status, each matched to the server's record; the mismatches."""
    from .matching import MISMATCH

    with _database(db_url) as session:
        study_info, matches = _matched(session, study_name, study_id)
    by_status = Counter((m.submission or {}).get("status", "no submission") for m in matches)
    by_verdict = Counter(m.verdict for m in matches)
    mismatches = [m for m in matches if m.verdict == MISMATCH]
    if as_json:
        click.echo(json.dumps({"study": _study_summary(study_info), "submissions": dict(by_status),
                               "verdicts": dict(by_verdict),
                               "mismatches": [_row(m) for m in mismatches]}))
        return
    summary = _study_summary(study_info)
    click.echo(f"study {summary['id']} ({summary['status']}): {summary['places_taken']} of "
               f"{summary['total_available_places']} places taken")
    click.echo("submissions: " + (", ".join(f"{n} {s}" for s, n in sorted(by_status.items())) or "none"))
    click.echo("reconcile would: " + ", ".join(f"{n} {v}" for v, n in sorted(by_verdict.items())))
    for m in mismatches:
        click.echo(f"MISMATCH {m.submission_id or '-'} {m.prolific_pid}: {m.problem}")


@prolific.command()
@DB_OPTION
@STUDY_OPTION
@STUDY_ID_OPTION
@click.option("--approve", is_flag=True, help="approve the clean completions (without it: a dry run)")
@click.option("--yes", is_flag=True, help="approve without asking")
@click.option("--log", "log_path", default="prolific-actions.jsonl", show_default=True,
              type=click.Path(dir_okay=False), help="every approval is appended here, one JSON line each")
def reconcile(db_url: str, study_name: str | None, study_id: str | None, approve: bool, yes: bool,
              log_path: str) -> None:
    """Approve the submissions whose server record completed cleanly; list the review-coded ones with
    the server's evidence and every mismatch. Never rejects. A dry run unless --approve."""
    from .api import ServerFailure
    from .matching import APPROVE, MISMATCH, REVIEW

    with _database(db_url) as session:
        study_info, matches = _matched(session, study_name, study_id)
    to_approve = [m for m in matches if m.verdict == APPROVE]
    for m in (m for m in matches if m.verdict == REVIEW):
        click.echo(f"REVIEW {m.submission_id} {m.prolific_pid}: {json.dumps(m.record.evidence)}")
    for m in (m for m in matches if m.verdict == MISMATCH):
        click.echo(f"MISMATCH {m.submission_id or '-'} {m.prolific_pid}: {m.problem}")
    click.echo(f"{len(to_approve)} submissions to approve (completed cleanly on the server with the completion "
               "code); nothing is rejected")
    if not approve or not to_approve:
        if to_approve:
            click.echo("dry run: run again with --approve to approve them")
        return
    if not yes and not click.confirm(f"Approve {len(to_approve)} submissions (participants are paid)?", default=False):
        raise click.ClickException("nothing approved")
    api = _api()
    approved = 0
    with Path(log_path).open("a", encoding="utf-8") as log:
        for m in to_approve:
            try:
                _call(api.approve, m.submission_id)
            except click.ClickException as exc:
                hint = (" (Prolific may have applied it)" if isinstance(exc.__cause__, ServerFailure) else "")
                raise click.ClickException(f"{exc.message}{hint}; {approved} approved before it. Run reconcile "
                                           "again: it lists afresh and skips what is already approved") from None
            approved += 1
            log.write(json.dumps({"at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                  "action": "approve", "study_id": study_info["id"],
                                  "submission_id": m.submission_id, "participant_id": m.prolific_pid}) + "\n")
            log.flush()
            click.echo(f"approved {m.submission_id} {m.prolific_pid}")
    click.echo(f"{approved} approved; logged in {log_path}")


# ---------------------------------------------------------------------------
def _api():  # noqa: ANN202
    from .api import ProlificAPI, ProlificError

    try:
        return ProlificAPI.from_environment()
    except ProlificError as exc:
        raise click.ClickException(str(exc)) from None


def _call(function, *args):  # noqa: ANN001, ANN002, ANN202
    """An API call, its ProlificError as one line (kept as the cause, for reconcile's hint)."""
    from .api import ProlificError

    try:
        return function(*args)
    except ProlificError as exc:
        raise click.ClickException(str(exc)) from exc


@contextmanager
def _database(db_url: str) -> Iterator:
    """A session on the study database; its engine is disposed of afterwards."""
    from ..db import make_engine, make_sessionmaker

    engine = make_engine(db_url)
    try:
        with make_sessionmaker(engine)() as session:
            yield session
    finally:
        engine.dispose()


def _study_and_records(session, study_name: str | None, cfg: dict):  # noqa: ANN001, ANN202
    from .records import server_records, study_row

    try:
        study = study_row(session, study_name)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    return study, server_records(session, study, timedelta(minutes=cfg["PARTICIPANT_TIMEOUT_MIN"]))


def _matched(session, study_name: str | None, study_id: str | None):  # noqa: ANN001, ANN202
    from ..config import load_config
    from ..models import Setting
    from .codes import configured_codes
    from .matching import match

    cfg = load_config()
    study, records = _study_and_records(session, study_name, cfg)
    if study_id is None:
        stored = session.get(Setting, STUDY_ID_SETTING.format(study=study.name))
        if stored is None:
            raise click.ClickException(f"no Prolific study recorded for {study.name!r}: give --study-id "
                                       "(or create it with `maco-study prolific create`)")
        study_id = stored.value
    api = _api()
    study_info = _call(api.study, study_id)
    submissions = _call(lambda: list(api.submissions(study_id)))
    return study_info, match(submissions, records, study_id, configured_codes(cfg))


def _study_summary(info: dict) -> dict:
    return {key: info.get(key) for key in ("id", "name", "status", "places_taken", "total_available_places")}


def _row(m) -> dict:  # noqa: ANN001
    return {"submission_id": m.submission_id, "participant_id": m.prolific_pid, "problem": m.problem,
            "status": (m.submission or {}).get("status"), "server_status": m.record.status if m.record else None}
