"""Figures laid out like the MACO paper's Figure 6: concepts (6b) and feature inversion (6a)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt
import torch

RANDOM_WEIGHTS_NOTE = "RANDOM WEIGHTS: not a trained network"


def mosaic(tiles: torch.Tensor, columns: int, gap: int = 2) -> torch.Tensor:
    """(N, 3, h, w) tiles -> one (3, H, W) image, row by row, on white with ``gap`` px between tiles."""
    count, channels, height, width = tiles.shape
    rows = -(-count // columns)
    sheet = torch.ones(channels, rows * (height + gap) - gap, columns * (width + gap) - gap)
    for i, tile in enumerate(tiles):
        top, left = (i // columns) * (height + gap), (i % columns) * (width + gap)
        sheet[:, top:top + height, left:left + width] = tile
    return sheet


@dataclass
class ConceptPanel:
    concept: int
    importance: float
    image: torch.Tensor  # MACO visualization (3, H, W)
    masked: torch.Tensor  # the same seen through its transparency map
    patches: torch.Tensor  # mosaic of the top patches (3, h, w)


def _show(axis, image: torch.Tensor, title: str | None = None) -> None:
    axis.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
    axis.set_xticks([])
    axis.set_yticks([])
    if title:
        axis.set_title(title, fontsize=9)


def _suptitle(figure, title: str, random_weights: bool) -> None:
    figure.suptitle(title, fontsize=11)
    if random_weights:
        figure.text(0.5, 0.005, RANDOM_WEIGHTS_NOTE, color="red", ha="center", va="bottom", fontsize=10)


def concepts_figure(panels: list[ConceptPanel], importance: list[float], title: str, random_weights: bool,
                    path: Path) -> None:
    """Figure 6b: all concepts' importance, then per top concept its patches, its MACO image and the masked one."""
    rows = len(panels)
    height = 1.0 + 2.2 * (rows + 1)
    figure = plt.figure(figsize=(8.4, height))
    grid = figure.add_gridspec(rows + 1, 3, height_ratios=[0.8] + [1] * rows, hspace=0.35, wspace=0.05,
                               top=1 - 0.7 / height, bottom=0.4 / height)
    bars = figure.add_subplot(grid[0, :])
    shown = {p.concept for p in panels}
    bars.bar(range(len(importance)), importance,
             color=["tab:orange" if k in shown else "lightgray" for k in range(len(importance))])
    bars.set_xticks(range(len(importance)))
    bars.set_xlabel("concept", fontsize=8)
    bars.set_ylabel("importance\n(total Sobol)", fontsize=8)
    bars.tick_params(labelsize=7)
    for row, panel in enumerate(panels, start=1):
        label = f"concept {panel.concept}\nimportance {panel.importance:.3f}"
        _show(figure.add_subplot(grid[row, 0]), panel.patches, "top patches" if row == 1 else None)
        figure.axes[-1].set_ylabel(label, fontsize=9)
        _show(figure.add_subplot(grid[row, 1]), panel.image, "MACO" if row == 1 else None)
        _show(figure.add_subplot(grid[row, 2]), panel.masked, "MACO, masked" if row == 1 else None)
    _suptitle(figure, title, random_weights)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def inversion_figure(rows: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]], title: str,
                     random_weights: bool, path: Path) -> None:
    """Figure 6a: per image (name, input, inversion, transparency, masked inversion), one row of four."""
    figure, axes = plt.subplots(len(rows), 4, figsize=(9.0, 0.6 + 2.3 * len(rows)), squeeze=False)
    for row, (name, source, inversion, alpha, masked) in enumerate(rows):
        heads = ("input", "inversion", "transparency", "masked") if row == 0 else (None,) * 4
        for axis, image, head in zip(axes[row], (source, inversion, alpha.expand(3, -1, -1), masked), heads):
            _show(axis, image, head)
        axes[row][0].set_ylabel(name, fontsize=8)
    _suptitle(figure, title, random_weights)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
