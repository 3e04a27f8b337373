"""Planning: the build cut into pieces, shards taking every n-th piece, and the --dry-run table."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

from ..config import StimuliError, StudyConfig
from ..occlusion import occluder_side
from ..pool import list_pool


@dataclass(frozen=True)
class Piece:
    stage: str  # "pool", "references" or "queries"
    network: str
    chunk: int = 0  # pool
    unit: int = -1  # queries
    rank: int = -1  # queries
    method: str = ""  # references
    seed: int = 0  # references
    units: tuple[int, ...] = ()  # references

    @property
    def name(self) -> str:
        if self.stage == "pool":
            return f"{self.network}-{self.chunk:06d}"
        if self.stage == "queries":
            return f"{self.network}-{self.unit:04d}-{self.rank:03d}"
        return f"{self.network}-{self.method}-{self.seed:04d}-{self.units[0]:04d}"


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str | None) -> "Shard":
        """`i/n` from --shard, else torchrun's RANK/WORLD_SIZE, else the whole build."""
        if text is None:
            return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise StimuliError(f"--shard: expected i/n (e.g. 0/4), got {text!r}") from None
        if not 0 <= index < count:
            raise StimuliError(f"--shard: need 0 <= i < n, got {text!r}")
        return cls(index, count)

    def mine(self, pieces: list[Piece]) -> list[Piece]:
        return pieces[self.index::self.count]


def plan_pieces(config: StudyConfig, pool_size: int) -> dict[str, list[Piece]]:
    chunks = math.ceil(pool_size / config.pool.chunk_size)
    refs = config.references
    return {
        "pool": [Piece("pool", n.key, chunk=c) for n in config.networks for c in range(chunks)],
        "references": [
            Piece("references", n.key, method=method, seed=refs.first_seed + j,
                  units=tuple(n.units[g:g + refs.units_per_run]))
            for n in config.networks for method in config.reference_runs
            for j in range(refs.per_trial) for g in range(0, len(n.units), refs.units_per_run)],
        "queries": [Piece("queries", n.key, unit=u, rank=r)
                    for n in config.networks for u in n.units for r in range(config.query.top_k)],
    }


def network_input_size(network) -> int:
    """The input size a network will be run at, known without loading weights."""
    import timm
    from maco.models import ModelError, resolve_name

    try:
        timm_name = resolve_name(network.model)
    except ModelError as exc:
        raise StimuliError(f"networks.{network.key}.model: {exc}") from None
    if network.input_size is not None:
        return network.input_size
    cfg = timm.models.get_pretrained_cfg(timm_name)
    return int(cfg.input_size[-1]) if cfg is not None else 224


def plan_rows(config: StudyConfig, pool_size: int) -> list[tuple[str, int, int, int]]:
    """(stage, pieces, forward image passes, backward image passes) for --dry-run."""
    pieces = plan_pieces(config, pool_size)
    positions = 0
    for network in config.networks:
        size = network_input_size(network)
        side = occluder_side(size, config.query.occluder_fraction)
        per_axis = (size - side) // config.query.stride + 1
        positions += len(network.units) * config.query.top_k * (per_axis ** 2 + 1)
    runs = {run: config.run_settings(run) for run in config.reference_runs}
    reference_passes = sum(  # a plugin's steps are its own business: counted as 1
        runs[run].get("steps", 1) * (runs[run].get("crops") or 1) * len(n.units) * config.references.per_trial
        for n in config.networks for run in runs)
    return [
        ("pool", len(pieces["pool"]), pool_size * len(config.networks), 0),
        ("references", len(pieces["references"]), reference_passes, reference_passes),
        ("queries", len(pieces["queries"]), positions, 0),
        ("finalize", 0, config.catch.trials, 0),  # catch distractors, checked in finalize
    ]


def describe_plan(config: StudyConfig, shard: Shard | None = None) -> str:
    pool = list_pool(config.pool.source)
    check_pool_size(config, len(pool.files))
    units = sum(len(n.units) for n in config.networks)
    lines = [f"study {config.name}: {len(config.networks)} networks, {units} units, "
             f"conditions {', '.join(config.condition_names)}, pool {len(pool.files)} images",
             f"{'stage':<12}{'pieces':>10}{'forward passes':>18}{'backward passes':>18}"]
    rows = plan_rows(config, len(pool.files))
    for stage, count, forward, backward in rows:
        lines.append(f"{stage:<12}{count:>10,}{forward:>18,}{backward:>18,}")
    lines.append(f"{'total':<12}{sum(r[1] for r in rows):>10,}{sum(r[2] for r in rows):>18,}"
                 f"{sum(r[3] for r in rows):>18,}")
    lines.append("(passes count images through the network: occlusion positions, crops x steps)")
    if shard is not None and shard.count > 1:
        pieces = plan_pieces(config, len(pool.files))
        mine = sum(len(shard.mine(p)) for p in pieces.values())
        lines.append(f"shard {shard.index}/{shard.count}: {mine} of "
                     f"{sum(len(p) for p in pieces.values())} pieces")
    return "\n".join(lines)


def check_pool_size(config: StudyConfig, pool_size: int) -> None:
    if pool_size < config.query.top_k:  # natural exemplars need more: finalize names the unit short of them
        raise StimuliError(f"pool.source: {pool_size} images, fewer than query.top_k = "
                           f"{config.query.top_k}")
