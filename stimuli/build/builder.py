"""The build of one shard: its stages in order, then (shard 0) the manifest."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from maco.device import DeviceError, resolve_device

from ..config import StimuliError, StudyConfig
from ..models import StudyModel, load_study_model
from ..pool import list_pool
from ..references import resolve_spectrum
from .finalize import finalize
from .plan import Shard, check_pool_size, network_input_size, plan_pieces
from .pool_stage import merged_topk, run_pool_stage
from .reference_stage import run_references_stage
from .store import PieceStore
from .trials import run_queries_stage


@dataclass
class Builder:
    config: StudyConfig
    out: Path
    shard: Shard = field(default_factory=Shard)
    device: str = "cpu"
    progress: bool = True
    stall_seconds: float = PieceStore.stall_seconds
    poll_seconds: float = PieceStore.poll_seconds
    compute_dtype: torch.dtype = torch.float32  # the networks' forward precision (maco.models.Model)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.store = PieceStore(self.out, self.shard, self.stall_seconds, self.poll_seconds)
        self.models: dict[str, StudyModel] = {}

    def run(self) -> Path | None:
        """Do this shard's pieces; shard 0 then writes the manifest (returned)."""
        config, store, shard = self.config, self.store, self.shard
        pool = list_pool(config.pool.source)
        check_pool_size(config, len(pool.files))
        for network in config.networks:
            network_input_size(network)  # unknown names fail here, before loading anything
        pieces = plan_pieces(config, len(pool.files))
        # a missing published spectrum stops the build here, before any model, piece or file
        spectrum = resolve_spectrum(config) if any(c.method == "maco" for c in config.reference_runs.values()) else None
        self.models = {n.key: load_study_model(n, config.seed, self.device, self.compute_dtype)
                       for n in config.networks}
        store.claim(config, pool)
        store.record_runtime(self.device, self.compute_dtype)
        run_pool_stage(store, config, self.models, pool, shard.mine(pieces["pool"]), self.progress)
        run_references_stage(store, config, self.models, shard.mine(pieces["references"]),
                             pieces["references"], spectrum, self.progress)
        store.wait(pieces["pool"], "pool pieces")
        topk = merged_topk(store, config, pieces["pool"], len(pool.files))
        run_queries_stage(store, config, self.models, pool, topk, shard.mine(pieces["queries"]), self.progress)
        if shard.index != 0:
            return None
        store.wait([p for stage in pieces.values() for p in stage], "pieces")
        return finalize(store, config, self.models, pool, topk, pieces)


def build(config: StudyConfig, out: str | Path, shard: Shard | None = None, device: str | None = None,
          progress: bool = True, stall_seconds: float = Builder.stall_seconds,
          compute_dtype: torch.dtype = torch.float32) -> Path | None:
    shard = shard or Shard.parse(None)
    if device is None:
        local_rank = int(os.environ.get("LOCAL_RANK", shard.index if shard.count > 1 else 0))
        device = f"cuda:{local_rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu"
    try:
        device = resolve_device(device)
    except DeviceError as exc:
        raise StimuliError(f"--device: {exc}") from None
    if device.type == "cuda":
        # this rank's GPU becomes the current one: otherwise the DataLoader's pin-memory thread
        # (and anything else that says only "cuda") opens a context on GPU 0 in every rank
        torch.cuda.set_device(device)
    return Builder(config, Path(out), shard, str(device), progress, stall_seconds,
                   compute_dtype=compute_dtype).run()
