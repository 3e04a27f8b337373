"""SQLAlchemy 2.0 models. Schema changes go through Alembic (study_server/migrations).

Timestamps are stored as UTC; SQLite hands them back naive, so read them
through `as_utc`.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from study_protocol.export import PARTICIPANT_STATUSES

from .stages import FIRST as FIRST_STAGE

# participant status values (the export contract's `participant_status`)
COMPLETED, IN_PROGRESS, RETURNED, TIMED_OUT = PARTICIPANT_STATUSES


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    pass


class Study(Base):
    """One imported bundle; `manifest_json` is the whole validated manifest."""

    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    manifest_json: Mapped[str] = mapped_column(Text)
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Unit(Base):
    __tablename__ = "units"
    __table_args__ = (UniqueConstraint("study_id", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(120))
    network: Mapped[str] = mapped_column(String(100))
    class_index: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(300))


class QueryPair(Base):
    __tablename__ = "query_pairs"
    __table_args__ = (UniqueConstraint("study_id", "pair_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    pair_key: Mapped[str] = mapped_column(String(100))  # the manifest id
    kind: Mapped[str] = mapped_column(String(10))  # practice / main / catch
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"))
    base_image: Mapped[str] = mapped_column(String(64))
    image_a: Mapped[str] = mapped_column(String(64))
    image_b: Mapped[str] = mapped_column(String(64))
    correct: Mapped[str] = mapped_column(String(1))  # "a" / "b"
    activation_base: Mapped[float] = mapped_column(Float)
    activation_max: Mapped[float] = mapped_column(Float)
    activation_min: Mapped[float | None] = mapped_column(Float)
    unit: Mapped[Unit] = relationship(lazy="joined")


class Participant(Base):
    __tablename__ = "participants"
    __table_args__ = (
        UniqueConstraint("study_id", "prolific_pid"),
        Index("ix_participants_assignment", "study_id", "is_preview", "condition", "status"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(16), unique=True)  # pseudonymous, exported
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    prolific_pid: Mapped[str | None] = mapped_column(String(64))  # NULL for previews
    prolific_study_id: Mapped[str | None] = mapped_column(String(64))
    prolific_session_id: Mapped[str | None] = mapped_column(String(64))
    is_preview: Mapped[bool] = mapped_column(Boolean, default=False)
    condition: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=IN_PROGRESS)
    stage: Mapped[str] = mapped_column(String(20), default=FIRST_STAGE)  # stages.py
    plan_seed: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    user_agent: Mapped[str] = mapped_column(String(400), default="")
    consented_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    window_width: Mapped[int | None] = mapped_column(Integer)  # at the device check
    window_height: Mapped[int | None] = mapped_column(Integer)
    instructions_shown_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    instruction_ms: Mapped[float | None] = mapped_column(Float)
    practice_round: Mapped[int] = mapped_column(Integer, default=0)
    practice_flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    comment: Mapped[str | None] = mapped_column(Text)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    return_reason: Mapped[str | None] = mapped_column(String(40))
    # at completion: why the session goes to manual review (";"-joined speed.REVIEW_REASONS keys), "" if none
    review: Mapped[str | None] = mapped_column(String(200))


class Trial(Base):
    """One slot of a participant's sequence; the answer lives in the same row."""

    __tablename__ = "trials"
    __table_args__ = (UniqueConstraint("participant_id", "position"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)  # 0-based, whole sequence
    kind: Mapped[str] = mapped_column(String(10))  # practice / main / catch
    practice_round: Mapped[int | None] = mapped_column(Integer)
    query_pair_id: Mapped[int] = mapped_column(ForeignKey("query_pairs.id", ondelete="CASCADE"))
    correct_side: Mapped[str] = mapped_column(String(5))  # left / right
    answer_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    chosen_side: Mapped[str | None] = mapped_column(String(5))
    confidence: Mapped[int | None] = mapped_column(Integer)
    rt_ms: Mapped[float | None] = mapped_column(Float)  # the browser's clock: images on screen -> answer
    # the server's clock: GET /api/trial sent the trial -> the answer arrived (answers.py)
    server_elapsed_ms: Mapped[float | None] = mapped_column(Float)
    shown_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    window_width: Mapped[int | None] = mapped_column(Integer)
    window_height: Mapped[int | None] = mapped_column(Integer)
    device_pixel_ratio: Mapped[float | None] = mapped_column(Float)
    blur_count: Mapped[int | None] = mapped_column(Integer)
    fullscreen_exit_count: Mapped[int | None] = mapped_column(Integer)
    webdriver: Mapped[bool | None] = mapped_column(Boolean)  # navigator.webdriver at the answer
    answer_input: Mapped[str | None] = mapped_column(String(8))  # "key" / "pointer": what gave the answer
    query_pair: Mapped[QueryPair] = relationship(lazy="joined")


class ServedImage(Base):
    """An image the server sent to a participant (under its opaque token): an answer counts only
    for a trial whose every image is here (answers.py)."""

    __tablename__ = "served_images"
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id", ondelete="CASCADE"),
                                                primary_key=True)
    token: Mapped[str] = mapped_column(String(32), primary_key=True)
    served_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Setting(Base):
    """Server-wide values shared by every worker (admin password hash, generated secret key)."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class LoginFailure(Base):
    __tablename__ = "login_failures"
    id: Mapped[int] = mapped_column(primary_key=True)
    remote_addr: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
