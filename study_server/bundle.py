"""Importing a stimulus bundle into the database (idempotent)."""
from __future__ import annotations

import json
import os

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from stimuli.manifest import Manifest, load_manifest

from .models import Participant, QueryPair, Study, Unit, utcnow


class BundleConflict(Exception):
    """A different bundle is already imported under the same study name."""


def import_bundle(session: Session, bundle_dir: str | os.PathLike, replace: bool = False) -> Study:
    """Import the bundle's manifest; a second import of the same bundle changes nothing.

    A different bundle under an existing study name is refused unless `replace`;
    replacing is refused once real participants exist (their trials point at the
    old query pairs), so a new bundle needs a new study name then.
    """
    manifest = load_manifest(bundle_dir)
    fingerprint = manifest.fingerprint()
    study = session.scalar(select(Study).where(Study.name == manifest.study))
    if study is not None:
        if study.fingerprint == fingerprint:
            return study
        if not replace:
            raise BundleConflict(
                f"study {manifest.study!r} is already imported from a different bundle "
                f"(fingerprint {study.fingerprint[:12]} vs {fingerprint[:12]}); "
                "use --replace to replace it, or give the new bundle another study name")
        taken = session.scalar(select(func.count()).select_from(Participant)
                               .where(Participant.study_id == study.id, Participant.is_preview.is_(False)))
        if taken:
            raise BundleConflict(f"study {manifest.study!r} already has {taken} participants; "
                                 "a changed bundle needs a new study name")
        session.execute(delete(Participant).where(Participant.study_id == study.id))
        session.execute(delete(QueryPair).where(QueryPair.study_id == study.id))
        session.execute(delete(Unit).where(Unit.study_id == study.id))
        study.fingerprint = fingerprint
        study.manifest_json = json.dumps(manifest.to_dict())
        study.imported_at = utcnow()
    else:
        study = Study(name=manifest.study, fingerprint=fingerprint,
                      manifest_json=json.dumps(manifest.to_dict()), imported_at=utcnow())
        session.add(study)
    session.flush()
    _insert_rows(session, study, manifest)
    return study


def _insert_rows(session: Session, study: Study, manifest: Manifest) -> None:
    units = {u.key: Unit(study_id=study.id, key=u.key, network=u.network,
                         class_index=u.class_index, label=u.label) for u in manifest.units}
    session.add_all(units.values())
    session.flush()
    session.add_all(
        QueryPair(study_id=study.id, pair_key=pair.id, kind=kind, unit_id=units[pair.unit].id,
                  base_image=pair.base_image, image_a=pair.image_a, image_b=pair.image_b,
                  correct=pair.correct, activation_base=pair.activation_base,
                  activation_max=pair.activation_max, activation_min=pair.activation_min)
        for kind, pair in manifest.all_query_pairs())
    session.flush()
