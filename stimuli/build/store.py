"""The resumable piece store: one shard's view of the bundle folder that every shard shares.

A finished piece is recorded as ``BUNDLE/.build/<stage>/<piece>.json``, written atomically after
its images are in ``BUNDLE/images/``; a recorded piece is never redone.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from maco.device import runtime_provenance
from maco.images import to_pil

from .. import manifest as mf
from ..config import StimuliError, StudyConfig
from ..pool import Pool
from .plan import Piece, Shard

WORK_DIR = ".build"
PLAN_FILE = "plan.json"
RUNTIME_DIR = "runtime"  # one record per process that worked on the bundle


@dataclass
class PieceStore:
    out: Path
    shard: Shard = field(default_factory=Shard)
    stall_seconds: float = 3600.0  # give up waiting when the other shards finish nothing for this long
    poll_seconds: float = 2.0

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.work = self.out / WORK_DIR

    # -- records --------------------------------------------------------
    def record_path(self, piece: Piece) -> Path:
        return self.work / piece.stage / f"{piece.name}.json"

    def done(self, piece: Piece) -> bool:
        return self.record_path(piece).is_file()

    def read(self, piece: Piece) -> dict[str, Any]:
        return json.loads(self.record_path(piece).read_text())

    def write(self, piece: Piece, record: dict[str, Any]) -> None:
        mf.atomic_write(self.record_path(piece), json.dumps(record, sort_keys=True).encode())

    def add_image(self, image: torch.Tensor) -> str:
        return mf.add_image(self.out, to_pil(image))

    # -- the bundle as a whole ---------------------------------------------
    def claim(self, config: StudyConfig, pool: Pool) -> None:
        """Start a bundle in an empty folder, or resume one made from the same config."""
        plan = {"fingerprint": config.fingerprint(), "pool_files": len(pool.files),
                "pool_listing": hashlib.sha256("\n".join(pool.files).encode()).hexdigest()}
        plan_file = self.work / PLAN_FILE
        if not plan_file.is_file():
            foreign = self.out.exists() and any(p.name != WORK_DIR for p in self.out.iterdir())
            # re-checked: a concurrent shard writes the plan before anything else
            if foreign and not plan_file.is_file():
                raise StimuliError(f"{self.out}: folder is not empty and holds no stimulus build")
            if not plan_file.is_file():
                mf.atomic_write(plan_file, json.dumps(plan).encode())
        if json.loads(plan_file.read_text()) != plan:
            raise StimuliError(f"{self.out}: this bundle was started from a different config or "
                               "pool; build into a new --out folder")

    def record_runtime(self, device: str, compute_dtype: torch.dtype) -> None:
        """Record this process's device and settings; a bundle keeps the precision it started with."""
        runtime = runtime_provenance(device, compute_dtype)
        earlier = {record["dtype"] for record in self.runtimes()}
        if earlier - {runtime["dtype"]}:
            raise StimuliError(f"--dtype: this bundle was started in {min(earlier)}, not {runtime['dtype']}; "
                               "resume it with that --dtype or build into a new --out folder")
        name = f"shard{self.shard.index}-{os.getpid()}-{time.time_ns()}.json"
        mf.atomic_write(self.work / RUNTIME_DIR / name, json.dumps(runtime, sort_keys=True).encode())

    def runtimes(self) -> list[dict[str, Any]]:
        """The distinct runtime records of every process that worked on the bundle."""
        texts = {path.read_text() for path in (self.work / RUNTIME_DIR).glob("*.json")}
        return [json.loads(text) for text in sorted(texts)]

    def wait(self, pieces: list[Piece], what: str) -> None:
        """Return once every piece is recorded, by this shard or the others."""
        missing = [p for p in pieces if not self.done(p)]
        if missing and self.shard.count == 1:
            raise StimuliError(f"{len(missing)} {what} missing after this build's own work")
        if missing:
            print(f"shard {self.shard.index}/{self.shard.count}: waiting for {len(missing)} {what} "
                  "of the other shards", file=sys.stderr)
        last_progress = time.monotonic()
        while missing:
            time.sleep(self.poll_seconds)
            still_missing = [p for p in missing if not self.done(p)]
            if len(still_missing) < len(missing):
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > self.stall_seconds:
                # a shard that crashed never writes its pieces: stop rather than wait forever
                raise StimuliError(
                    f"shard {self.shard.index}/{self.shard.count}: the other shards finished none of "
                    f"{len(still_missing)} {what} (e.g. {still_missing[0].name}) in {self.stall_seconds:g} s; "
                    "rerun the shards that stopped (the build resumes where it was) or raise --stall-timeout")
            missing = still_missing


def progress_bar(total: int, desc: str, enabled: bool) -> tqdm:
    """One stage's bar on stderr (stdout stays for the command's result)."""
    return tqdm(total=total, desc=desc, disable=not enabled, file=sys.stderr, dynamic_ncols=True, unit="it")
