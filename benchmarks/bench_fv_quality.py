"""Our MACO against Horama 0.3.0 (the MACO authors' PyTorch code), side by side on one trained network.

A small CNN is trained here in seconds on four coloured shapes (red disc,
green square, blue ring, yellow cross on textured grey backgrounds, 64 px).
For every seed and unit, our ``maco.maco`` and ``horama.maco`` run with the
same steps, image size, crops per step and the published ImageNet spectrum,
alternating (which goes first swaps every time), one unit per run. One
protocol scores both sets of images: the network's logits and penultimate
features on the same fixed random crops (side ~N(0.25, 0.1), placed
uniformly, ``score_boxes``: the protocol does not favour centre-biased crops), no noise.

- own logit: the unit's logit, mean over crops; margin: that minus the best
  other unit's mean logit;
- plausibility: per crop, the Deep-KNN distance (L2-normalised penultimate
  features, 1st nearest, as `maco-study evaluate`) to natural images of the
  unit's class, mean;
- FID: torchmetrics' FrechetInceptionDistance on those penultimate features
  (the toy task has no Inception-v3), every crop against natural images.

Last line: one JSON object with own_logit_ratio, margin_ratio,
plausibility_ratio, fid_ratio and time_ratio (ours / Horama). Targets:
the first two >= 1, the others <= 1. Two measures of what the draw of seeds
alone moves a ratio by: ``ci95``, a 95% bootstrap interval of each ratio
(each method's images drawn again with replacement, per unit), and
``horama_halves``, the same ratios between Horama's own odd-seed and
even-seed runs (docs/maco.md). A contact sheet PNG shows every image.

    python benchmarks/bench_fv_quality.py [--steps 256] [--seeds 4] [--out fv_quality.png] [--threads 1] [--smoke]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torch import nn

os.environ.setdefault("MACO_OFFLINE", "1")

from maco.evaluation.metrics import deep_knn_distance  # noqa: E402
from maco.images import stretch_contrast, to_pil  # noqa: E402
from maco.models import Model  # noqa: E402
from maco.optimize import maco  # noqa: E402
from maco.spectra import load_spectrum  # noqa: E402
from maco.toy import train_toy  # noqa: E402
from maco.transforms import crop_and_resize  # noqa: E402
from maco.transparency import masked_image  # noqa: E402

SPECTRUM = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet_spectrum_decorrelated.npy"
INPUT = 64
CLASSES = ("red disc", "green square", "blue ring", "yellow cross")
COLOURS = torch.tensor([[0.9, 0.15, 0.1], [0.15, 0.75, 0.2], [0.15, 0.25, 0.95], [0.95, 0.85, 0.1]])


def shapes(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Coloured shapes at random places and sizes on smooth random grey textures, in [0, 1]."""
    n = labels.shape[0]
    coords = torch.arange(INPUT, dtype=torch.float32)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    cy, cx = (torch.rand(2, n, 1, 1, generator=generator) * 0.5 + 0.25) * INPUT
    radius = (torch.rand(n, 1, 1, generator=generator) * 0.15 + 0.15) * INPUT
    dy, dx = (y - cy).abs(), (x - cx).abs()
    distance = torch.hypot(dy, dx)
    masks = torch.stack([
        distance < radius,
        torch.maximum(dy, dx) < radius * 0.9,
        (distance < radius) & (distance > radius * 0.55),
        (torch.minimum(dy, dx) < radius * 0.3) & (torch.maximum(dy, dx) < radius),
    ], dim=1)[torch.arange(n), labels].float().unsqueeze(1)
    coarse = torch.rand(n, 1, 8, 8, generator=generator)
    background = 0.3 + 0.4 * nn.functional.interpolate(coarse, size=INPUT, mode="bilinear").expand(-1, 3, -1, -1)
    images = background * (1 - masks) + COLOURS[labels].view(n, 3, 1, 1) * masks
    return (images + 0.05 * torch.randn(images.shape, generator=generator)).clamp(0, 1)


class ShapesNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(64, len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train(iterations: int) -> tuple[Model, float]:
    torch.manual_seed(0)  # the initial weights
    return train_toy(ShapesNet(), shapes, len(CLASSES), INPUT, iterations, "shapes")


def run_ours(model: Model, unit: int, seed: int, args, spectrum) -> tuple[torch.Tensor, torch.Tensor]:
    viz = maco(model, [unit], steps=args.steps, size=args.size, crops=args.crops, seed=seed,
               spectrum=spectrum, progress=False)[0]
    return viz.image, viz.transparency


def run_horama(model: Model, unit: int, seed: int, args, workdir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    import horama

    torch.manual_seed(seed)  # Horama draws its phase and crops from the global generator
    with contextlib.chdir(workdir), contextlib.redirect_stderr(open(os.devnull, "w")):
        image, transparency = horama.maco(
            lambda images: model(images)[:, unit].mean(), total_steps=args.steps, learning_rate=1.0,
            image_size=args.size, model_input_size=model.input_size, crops_per_iteration=args.crops,
            values_range=(0.0, 1.0), device="cpu")
    return image.detach(), transparency.sum(0)


def score_boxes(crops: int, size: int) -> torch.Tensor:
    """The protocol's fixed crops: side ~N(0.25, 0.1) clipped to [0.1, 1], placed uniformly, seed 123.

    Fixed here rather than read from MACO's crop defaults, so that figures stay comparable when those change.
    """
    generator = torch.Generator().manual_seed(123)
    side = (torch.randn(crops, generator=generator) * 0.1 + 0.25).clamp(0.1, 1.0) * size
    x1, y1 = (torch.rand(crops, generator=generator) * (size - side) for _ in range(2))
    return torch.stack([torch.zeros(crops), x1, y1, x1 + side, y1 + side], dim=1)


@dataclass
class Scores:
    """One protocol's per-image results for one method: a row per (unit, seed) image."""
    units: torch.Tensor  # (images,)
    seeds: torch.Tensor  # (images,)
    own_logit: torch.Tensor  # (images,) the unit's logit, mean over the crops
    margin: torch.Tensor  # (images,) that minus the best other unit's mean logit
    plausibility: torch.Tensor  # (images,) Deep-KNN distance to the class's natural images, mean over the crops
    features: torch.Tensor  # (images, crops, features) penultimate features of every crop


@torch.no_grad()
def score(model: Model, runs: list[tuple], natural: dict[int, torch.Tensor], crops: int) -> Scores:
    """One protocol for both methods: logits and features on the same fixed crops, no noise.

    ``runs``: (unit, seed, image, ...) rows.
    """
    boxes = score_boxes(crops, runs[0][2].shape[-1])
    own, margin, nearest, features = [], [], [], []
    for unit, _, image, *_ in runs:
        feats = model.net.features(model.normalize(crop_and_resize(image.unsqueeze(0), boxes, INPUT)))
        logits = model.net.head(feats).mean(0)
        own.append(logits[unit])
        margin.append(logits[unit] - torch.cat([logits[:unit], logits[unit + 1:]]).max())
        nearest.append(deep_knn_distance(feats, natural[unit]).mean().float())
        features.append(feats)
    return Scores(torch.tensor([r[0] for r in runs]), torch.tensor([r[1] for r in runs]), torch.stack(own),
                  torch.stack(margin), torch.stack(nearest), torch.stack(features))


def fid_metric(natural: dict[int, torch.Tensor]):
    """torchmetrics' FID on the penultimate features (the toy task has no Inception-v3), natural images loaded once."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    class Identity(nn.Module):
        num_features = next(iter(natural.values())).shape[1]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.double()

    fid = FrechetInceptionDistance(feature=Identity(), reset_real_features=False)
    fid.update(torch.cat(list(natural.values())), real=True)
    return fid


def summarise(scores: Scores, fid, index: torch.Tensor | None = None) -> dict[str, float]:
    """The four measures over the images ``index`` (default all; repeats count): means, and FID of every crop."""
    index = torch.arange(len(scores.units)) if index is None else index
    fid.reset()
    fid.update(scores.features[index].flatten(0, 1), real=False)
    return {"own_logit": scores.own_logit[index].mean().item(), "margin": scores.margin[index].mean().item(),
            "plausibility": scores.plausibility[index].mean().item(), "fid": float(fid.compute())}


def ratios(ours: dict[str, float], theirs: dict[str, float]) -> dict[str, float]:
    return {f"{name}_ratio": ours[name] / theirs[name] for name in ours}


def bootstrap_intervals(ours: Scores, theirs: Scores, fid, resamples: int, seed: int = 0) -> dict[str, list[float]]:
    """95% percentile intervals of every ratio: each method's images drawn again with replacement, per unit.

    What the draw of seeds alone can move a ratio by, at this number of seeds.
    """
    generator = torch.Generator().manual_seed(seed)

    def redraw(units: torch.Tensor) -> torch.Tensor:
        index = []
        for unit in units.unique():
            rows = (units == unit).nonzero().flatten()
            index.append(rows[torch.randint(len(rows), (len(rows),), generator=generator)])
        return torch.cat(index)

    draws = [ratios(summarise(ours, fid, redraw(ours.units)), summarise(theirs, fid, redraw(theirs.units)))
             for _ in range(resamples)]
    return {name: torch.tensor([d[name] for d in draws], dtype=torch.float64).quantile(
        torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist() for name in draws[0]}


def contact_sheet(rows: list[tuple[str, list[torch.Tensor]]], columns: list[str], path: Path, tile: int = 128) -> None:
    """One row per (unit, seed), one column per method and rendering, images stretched for display."""
    label_w, head_h = 150, 22
    sheet = Image.new("RGB", (label_w + tile * len(columns), head_h + tile * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, name in enumerate(columns):
        draw.text((label_w + c * tile + 4, 4), name, fill="black")
    for r, (name, tiles) in enumerate(rows):
        draw.text((4, head_h + r * tile + tile // 2 - 6), name, fill="black")
        for c, image in enumerate(tiles):
            sheet.paste(to_pil(image).resize((tile, tile), Image.Resampling.LANCZOS),
                        (label_w + c * tile, head_h + r * tile))
    sheet.save(path)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--crops", type=int, default=6)
    parser.add_argument("--seeds", type=int, default=4, help="at least 2 (the halves)")
    parser.add_argument("--train-iterations", type=int, default=300)
    parser.add_argument("--score-crops", type=int, default=64)
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap draws behind ci95")
    parser.add_argument("--out", type=Path, default=Path("fv_quality.png"), help="contact sheet PNG")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: a shared machine slows several threads down many times)")
    parser.add_argument("--smoke", action="store_true", help="tiny settings, for the test suite")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.smoke:
        args.steps, args.size, args.seeds, args.train_iterations, args.score_crops, args.resamples = 3, 64, 2, 20, 4, 20
    if args.seeds < 2:
        raise SystemExit("bench_fv_quality: --seeds must be at least 2 (Horama's two halves)")
    if not SPECTRUM.is_file():
        raise SystemExit(f"bench_fv_quality: the published spectrum is missing at {SPECTRUM}")

    model, accuracy = train(args.train_iterations)
    print(f"network: test accuracy {accuracy:.3f} on the four shapes", flush=True)
    units = list(range(len(CLASSES)))
    generator = torch.Generator().manual_seed(1)
    natural = {}
    with torch.no_grad():
        for unit in units:
            photos = shapes(torch.full((200 if not args.smoke else 8,), unit), generator)
            natural[unit] = model.net.features(model.normalize(photos))
    spectrum = load_spectrum(SPECTRUM)
    results = {"ours": [], "horama": []}
    seconds = {"ours": 0.0, "horama": 0.0}
    with tempfile.TemporaryDirectory() as workdir:
        os.symlink(SPECTRUM, Path(workdir) / "spectrum_decorrelated.npy")  # Horama reads it from the cwd
        runners = {"ours": lambda u, s: run_ours(model, u, s, args, spectrum),
                   "horama": lambda u, s: run_horama(model, u, s, args, Path(workdir))}
        order = ["ours", "horama"]
        for seed in range(args.seeds):
            for unit in units:
                for method in order:
                    started = time.perf_counter()
                    results[method].append((unit, seed, *runners[method](unit, seed)))
                    seconds[method] += time.perf_counter() - started
                order.reverse()
            print(f"seed {seed} done", flush=True)

    fid = fid_metric(natural)
    scores = {method: score(model, runs, natural, args.score_crops) for method, runs in results.items()}
    summaries = {method: summarise(scores[method], fid) for method in scores}
    for method, runs in results.items():
        means = torch.stack([r[2].mean(dim=(1, 2)) for r in runs])
        print(f"{method}: {json.dumps({k: round(v, 3) for k, v in summaries[method].items()})}, "
              f"mean RGB {means.min().item():.2f}..{means.max().item():.2f}, {seconds[method]:.1f} s", flush=True)
    rows = []
    for (unit, seed, ours, ours_t), (_, _, theirs, theirs_t) in zip(results["ours"], results["horama"]):
        rows.append((f"{CLASSES[unit]}, seed {seed}", [
            stretch_contrast(ours), masked_image(stretch_contrast(ours), ours_t),
            stretch_contrast(theirs), masked_image(stretch_contrast(theirs), theirs_t)]))
    contact_sheet(rows, ["ours", "ours masked", "Horama", "Horama masked"], args.out)
    print(f"contact sheet: {args.out}", flush=True)
    horama = scores["horama"]
    even, odd = (summarise(horama, fid, (horama.seeds % 2 == parity).nonzero().flatten()) for parity in (0, 1))
    intervals = bootstrap_intervals(scores["ours"], horama, fid, args.resamples)
    summary = {**{k: round(v, 3) for k, v in ratios(summaries["ours"], summaries["horama"]).items()},
               "time_ratio": round(seconds["ours"] / seconds["horama"], 3),
               "ci95": {k: [round(v, 3) for v in bounds] for k, bounds in intervals.items()},
               "horama_halves": {k: round(v, 3) for k, v in ratios(odd, even).items()},
               "steps": args.steps, "size": args.size,
               "crops": args.crops, "seeds": args.seeds, "network_accuracy": round(accuracy, 3),
               "threads": torch.get_num_threads()}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
