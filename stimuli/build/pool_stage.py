"""Stage 1: each network's top-k pool images per unit (``StudyConfig.pool_top_k``: more with a
natural condition), one piece per chunk of the pool.

Merging the chunks' top-k is exact (see stimuli/pool.py), so the chunks may be done by any shard.
"""
from __future__ import annotations

import numpy as np

from ..config import StimuliError, StudyConfig
from ..models import StudyModel
from ..pool import Pool, TopK, pool_topk
from .plan import Piece
from .store import PieceStore, progress_bar


def run_pool_stage(store: PieceStore, config: StudyConfig, models: dict[str, StudyModel], pool: Pool,
                   pieces: list[Piece], progress: bool) -> None:
    todo = [p for p in pieces if not store.done(p)]
    size = config.pool.chunk_size

    def chunk(piece: Piece) -> range:
        return range(piece.chunk * size, min((piece.chunk + 1) * size, len(pool.files)))

    for network in config.networks:
        mine = [p for p in todo if p.network == network.key]
        with progress_bar(sum(len(chunk(p)) for p in mine), f"pool {network.key}", progress) as bar:
            for piece in mine:
                best = pool_topk(models[network.key], list(network.units), pool, chunk(piece),
                                 config.pool_top_k, config.pool.batch_size, config.pool.workers, bar)
                store.write(piece, {"values": best.values.tolist(), "indices": best.indices.tolist(),
                                    "unreadable": best.unreadable})


def merged_topk(store: PieceStore, config: StudyConfig, pieces: list[Piece], pool_size: int) -> dict[str, TopK]:
    """Every network's top-k over the whole pool, from all shards' pool pieces."""
    merged = {}
    for network in config.networks:
        parts = []
        for piece in (p for p in pieces if p.network == network.key):
            record = store.read(piece)
            parts.append(TopK(np.array(record["values"], dtype=np.float64).reshape(len(network.units), -1),
                              np.array(record["indices"], dtype=np.int64).reshape(len(network.units), -1),
                              record["unreadable"]))
        merged[network.key] = TopK.merged(parts, config.pool_top_k)
        readable = pool_size - len(merged[network.key].unreadable)
        if readable < config.query.top_k:
            raise StimuliError(f"pool.source: only {readable} readable images "
                               f"({len(merged[network.key].unreadable)} unreadable), fewer than "
                               f"query.top_k = {config.query.top_k}")
    return merged
