"""Stage 2: the reference visualizations, one piece per (network, method, seed, group of units)."""
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
    earlier = {store.read(p)["spectrum_source"] for p in pieces if p.method == "maco" and store.done(p)}
    if spectrum is not None and earlier - {spectrum.source}:
        raise StimuliError(f"references.spectrum: this build started with the spectrum "
                           f"{sorted(earlier)[0]!r} but now gets {spectrum.source!r}; set "
                           "references.spectrum to a file (maco-study spectrum) to pin it")


def run_references_stage(store: PieceStore, config: StudyConfig, models: dict[str, StudyModel],
                         pieces: list[Piece], all_pieces: list[Piece], spectrum: Any, progress: bool) -> None:
    """``spectrum``: MACO's, resolved once per process before any stage (``references.resolve_spectrum``)."""
    todo = [p for p in pieces if not store.done(p)]
    with_mask = "maco_mask" in config.conditions
    check_pinned(store, spectrum, all_pieces)
    with progress_bar(len(todo), "references", progress) as bar:
        for piece in todo:
            model = models[piece.network]
            vizs = visualize(model, config, piece.method, list(piece.units), piece.seed, spectrum)
            study_units = next(n.units for n in config.networks if n.key == piece.network)
            images, quality = {}, {}
            for unit, viz in zip(piece.units, vizs):
                images[str(unit)] = {"image": store.add_image(viz.image)}
                if piece.method == "maco" and with_mask:
                    images[str(unit)]["masked"] = store.add_image(masked(viz))
                quality[str(unit)] = unit_record(model, viz, piece.method, study_units)
            store.write(piece, {"images": images, "quality": quality, "algorithm": vizs[0].algorithm,
                                "spectrum_source": vizs[0].spectrum_source})
            bar.update()
