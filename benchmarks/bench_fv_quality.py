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
- plausibility: per crop, the 1-NN distance in the network's penultimate
  features to natural images of the unit's class (Deep-KNN), mean;
- FID: torchmetrics' FrechetInceptionDistance on those penultimate features
  (the toy task has no Inception-v3), every crop against natural images.

Last line: one JSON object with own_logit_ratio, margin_ratio,
plausibility_ratio, fid_ratio and time_ratio (ours / Horama). Targets:
the first two >= 1, the others <= 1. ``horama_halves`` gives the same
ratios between Horama's own even-seed and odd-seed runs: how far from 1 a
ratio lands by the draw of seeds alone (half the seeds; docs/maco.md). A
contact sheet PNG shows every image.

    python benchmarks/bench_fv_quality.py [--steps 256] [--seeds 4] [--out fv_quality.png] [--threads 1] [--smoke]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torch import nn

os.environ.setdefault("MACO_OFFLINE", "1")

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


@torch.no_grad()
def score(model: Model, images: list[torch.Tensor], units: list[int], natural: dict[int, torch.Tensor],
          crops: int) -> dict[str, object]:
    """One protocol for both methods: logits and features on the same fixed crops, no noise."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    size = images[0].shape[-1]
    boxes = score_boxes(crops, size)
    own, margin, nearest, features = [], [], [], []
    for image, unit in zip(images, units):
        batch = model.normalize(crop_and_resize(image.unsqueeze(0), boxes, INPUT))
        feats = model.net.features(batch)
        logits = model.net.head(feats).mean(0)
        own.append(logits[unit].item())
        margin.append((logits[unit] - torch.cat([logits[:unit], logits[unit + 1:]]).max()).item())
        nearest.append(torch.cdist(feats, natural[unit]).min(dim=1).values.mean().item())
        features.append(feats)

    class Identity(nn.Module):
        num_features = features[0].shape[1]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.double()

    fid = FrechetInceptionDistance(feature=Identity())
    fid.update(torch.cat(list(natural.values())), real=True)
    fid.update(torch.cat(features), real=False)
    return {"own_logit": statistics.mean(own), "margin": statistics.mean(margin),
            "plausibility": statistics.mean(nearest), "fid": float(fid.compute())}


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
    parser.add_argument("--out", type=Path, default=Path("fv_quality.png"), help="contact sheet PNG")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: a shared machine slows several threads down many times)")
    parser.add_argument("--smoke", action="store_true", help="tiny settings, for the test suite")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.smoke:
        args.steps, args.size, args.seeds, args.train_iterations, args.score_crops = 3, 64, 2, 20, 4
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

    scores = {}
    for method, runs in results.items():
        scores[method] = score(model, [r[2] for r in runs], [r[0] for r in runs], natural, args.score_crops)
        means = torch.stack([r[2].mean(dim=(1, 2)) for r in runs])
        print(f"{method}: {json.dumps({k: round(v, 3) for k, v in scores[method].items()})}, "
              f"mean RGB {means.min().item():.2f}..{means.max().item():.2f}, {seconds[method]:.1f} s", flush=True)
    rows = []
    for (unit, seed, ours, ours_t), (_, _, theirs, theirs_t) in zip(results["ours"], results["horama"]):
        rows.append((f"{CLASSES[unit]}, seed {seed}", [
            stretch_contrast(ours), masked_image(stretch_contrast(ours), ours_t),
            stretch_contrast(theirs), masked_image(stretch_contrast(theirs), theirs_t)]))
    contact_sheet(rows, ["ours", "ours masked", "Horama", "Horama masked"], args.out)
    print(f"contact sheet: {args.out}", flush=True)
    halves = [score(model, [r[2] for r in runs], [r[0] for r in runs], natural, args.score_crops)
              for runs in ([r for r in results["horama"] if r[1] % 2 == parity] for parity in (0, 1))]
    ratios = {**{f"{name}_ratio": scores["ours"][name] / scores["horama"][name] for name in scores["ours"]},
              "time_ratio": seconds["ours"] / seconds["horama"]}
    summary = {**{k: round(v, 3) for k, v in ratios.items()},
               "horama_halves": {f"{name}_ratio": round(halves[1][name] / halves[0][name], 3) for name in halves[0]},
               "steps": args.steps, "size": args.size,
               "crops": args.crops, "seeds": args.seeds, "network_accuracy": round(accuracy, 3),
               "threads": torch.get_num_threads()}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
