"""Stage 2: the reference visualizations, one piece per (network, run, seed, group of units).

A run is a method with its settings (``ConditionConfig.run``): conditions differing only in
``mask`` share it."""
from __future__ import annotations

from typing import Any

from ..config import StimuliError, StudyConfig
from ..models import StudyModel
from ..quality import unit_record
from ..references import masked, visualize
from .plan import Piece
from .store import PieceStore, progress_bar


def check_pinned(store: PieceStore, spectrum: Any, pieces: list[Piece]) -> None:
    """A resumed build must find the spectrum it started with."""
    earlier = {store.read(p)["spectrum_source"] for p in pieces
               if store.done(p) and store.read(p).get("spectrum_source")}
    if spectrum is not None and earlier - {spectrum.source}:
        raise StimuliError(f"references.spectrum: this build started with the spectrum "
                           f"{sorted(earlier)[0]!r} but now gets {spectrum.source!r}; set "
                           "references.spectrum to a file (maco-study spectrum) to pin it")


def run_references_stage(store: PieceStore, config: StudyConfig, models: dict[str, StudyModel],
                         pieces: list[Piece], all_pieces: list[Piece], spectrum: Any, progress: bool) -> None:
    """``spectrum``: MACO's, resolved once per process before any stage (``references.resolve_spectrum``)."""
    todo = [p for p in pieces if not store.done(p)]
    masked_runs = {c.run for c in config.conditions if c.mask}
    check_pinned(store, spectrum, all_pieces)
    with progress_bar(len(todo), "references", progress) as bar:
        for piece in todo:
            model = models[piece.network]
            vizs = visualize(model, config, piece.method, list(piece.units), piece.seed, spectrum)
            study_units = next(n.units for n in config.networks if n.key == piece.network)
            images, quality = {}, {}
            for unit, viz in zip(piece.units, vizs):
                images[str(unit)] = {"image": store.add_image(viz.image)}
                if piece.method in masked_runs:
                    if viz.mask is None:
                        raise StimuliError(f"conditions: mask = true, but method {piece.method!r} "
                                           "returns no masks")
                    images[str(unit)]["masked"] = store.add_image(masked(viz))
                quality[str(unit)] = unit_record(model, viz, config.reference_runs[piece.method].method,
                                                 study_units)
            store.write(piece, {"images": images, "quality": quality, "algorithm": vizs[0].algorithm,
                                "spectrum_source": vizs[0].spectrum_source})
            bar.update()
