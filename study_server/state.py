"""The server's request state, a leaf module as the Flask tutorial's db.py: the blueprints
import `state`, `db`, `read_db` and `read_connection` from here, and only the factory (app.py) imports the blueprints.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

from flask import Flask, current_app, g
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from .db import make_engine
from .flow import participant_row, participant_trials
from .images import ImageStore
from .plan import EXAMPLE_SCOPE, OPAQUE_PER_TRIAL, StudyContext, example_images, image_token, practice_scope, trial_images
from .speed import SpeedRules, record_served

EXTENSION = "maco"
PLANS_CACHED = 8192  # participants whose plan a process keeps (reached_images)


@dataclass
class ServerState:
    engine: Engine
    sessions: sessionmaker[Session]
    read_engine: Engine  # for requests that never write
    read_sessions: sessionmaker[Session]  # the same, as ORM sessions (the admin pages)
    study: StudyContext
    bundle_dir: Path
    token_secret: bytes  # keys the opaque image ids
    speed: SpeedRules
    sent_images_dir: Path | None  # where a front web server sends the images from (images.py), else None
    # participant id -> {opaque token: (image id, scope)}, built once per participant and process
    participant_images: Callable[[int], dict[str, tuple[str, str]]] = field(init=False)
    # (participant id, last trial sent) -> image ids the participant may fetch, read once per trial and process
    reached_images: Callable[[int, int], frozenset[str]] = field(init=False)
    images: ImageStore = field(init=False)  # the bytes served for an image id
    # (participant id, token) -> None once this process recorded the image as sent (speed.py)
    record_served: Callable[[int, str], None] = field(init=False)

    def __post_init__(self) -> None:
        manifest = self.study.manifest
        self.images = ImageStore(self.bundle_dir, manifest, self.sent_images_dir)
        # (scope, image ids): main and catch trials share the plain scope; each practice round and
        # the instructions' example have their own ids (plan.image_token)
        # the base and query images only: the references are static files (reference_files.py)
        practice = {i for pair in manifest.practice_trials for i in (pair.base_image, pair.image_a, pair.image_b)}
        scopes = [("", tuple({i for _, pair in manifest.all_query_pairs()
                              for i in (pair.base_image, pair.image_a, pair.image_b)})),
                  *((practice_scope(r), tuple(practice)) for r in range(1, manifest.protocol.max_practice_rounds + 1)),
                  (EXAMPLE_SCOPE, tuple(example_images(manifest, manifest.conditions[0])[:OPAQUE_PER_TRIAL]))]

        @lru_cache(maxsize=4096)
        def image_map(participant_id: int) -> dict[str, tuple[str, str]]:
            return {image_token(self.token_secret, participant_id, i, scope): (i, scope)
                    for scope, ids in scopes for i in ids}

        self.participant_images = image_map

        # participant id -> (last position loaded, {position: images of every trial up to it}): a
        # participant's plan only grows (a practice round, then the main trials), and a trial never
        # changes once created, so a loaded prefix stays true; it is read again only when a trial
        # beyond it is asked for (a few times per participant, not once per trial)
        plans: dict[int, tuple[int, dict[int, frozenset[str]]]] = {}

        def load_plan(participant_id: int) -> tuple[int, dict[int, frozenset[str]]]:
            with self.read_engine.connect() as connection:
                participant = participant_row(connection, participant_id)
                trials = [] if participant is None else participant_trials(connection, participant)
                seen: set[str] = set()
                upto = {}
                for trial in trials:
                    seen.update(trial_images(self.study, participant.condition, trial)[:OPAQUE_PER_TRIAL])
                    upto[trial.position] = frozenset(seen)
            if len(plans) >= PLANS_CACHED:
                plans.clear()
            plans[participant_id] = plan = (max(upto, default=-1), upto)
            return plan

        @lru_cache(maxsize=8192)
        def reached(participant_id: int, served_position: int) -> frozenset[str]:
            """The images of every trial up to the one after the last sent (study.js preloads it):
            an image of a trial further on is not served even under a valid id."""
            last, upto = plans.get(participant_id) or load_plan(participant_id)
            if last < served_position + 1:
                last, upto = load_plan(participant_id)  # the plan may have grown since
            below = [p for p in upto if p <= served_position + 1]
            return upto[max(below)] if below else frozenset()

        self.reached_images = reached

        relaxed = (make_engine(self.engine.url.render_as_string(hide_password=False), relaxed=True)
                   if self.engine.dialect.name == "sqlite" else self.engine)

        @lru_cache(maxsize=65536)
        def record(participant_id: int, token: str) -> None:
            """One write per image and participant (a browser caches the image; a repeated
            request, from a reload without cache or another worker, finds the row and adds none),
            committed without waiting for the disk (speed.record_served)."""
            with relaxed.begin() as connection:
                record_served(connection, participant_id, token)

        self.record_served = record


def state() -> ServerState:
    return current_app.extensions[EXTENSION]


def db() -> Session:
    """The request's database session (closed at teardown)."""
    if "db" not in g:
        g.db = state().sessions()
    return g.db


def read_db() -> Session:
    """The request's read-only ORM session (the admin pages): never takes SQLite's write lock."""
    if "read_db" not in g:
        g.read_db = state().read_sessions()
    return g.read_db


def read_connection() -> Connection:
    """The request's read-only connection (Core rows, no ORM session): never takes SQLite's write lock."""
    if "read_connection" not in g:
        g.read_connection = state().read_engine.connect()
    return g.read_connection


def close_read_connection() -> None:
    """Return the request's read connection to the pool now (the read is done)."""
    connection = g.pop("read_connection", None)
    if connection is not None:
        connection.close()


def init_state(app: Flask, server_state: ServerState) -> None:
    """Attach the state to the app and close the request's sessions at teardown."""
    app.extensions[EXTENSION] = server_state

    @app.teardown_appcontext
    def _close_db(_exc: BaseException | None) -> None:
        for name in ("db", "read_db"):
            session = g.pop(name, None)
            if session is not None:
                session.close()
        close_read_connection()
