"""Our MACO and our Olah against the references (Horama 0.3.0, Lucent), side by side, on a CNN and a ViT.

Two small networks are trained here in seconds on four coloured shapes (red
disc, green square, blue ring, yellow cross on textured grey backgrounds, 64
px): a CNN and a ViT (timm's VisionTransformer, patch 8, width 96, depth 4).
For every network, seed and unit, five methods run with the same steps,
image size and crops per step, one unit per run, in an order that rotates:

- ``maco``: our ``maco.maco`` (the study's default, its random carrier);
- ``maco_no_carrier``: the same with ``random_carrier=False`` (the references' start);
- ``horama``: ``horama.maco``, the MACO authors' PyTorch code (published spectrum);
- ``olah``: our ``maco.olah`` (Lucid's Fourier basis and transforms), at the input size;
- ``lucent``: Lucent's ``render_vis`` with the same parameterization and its standard transforms.

One scoring for every method, under three protocols (the images as seen):

- ``crops``: 64 fixed random crops (side ~N(0.25, 0.1), placed uniformly,
  ``score_boxes``), what the MACO optimisers see;
- ``whole``: the whole image resized to the input, what a participant sees;
- ``masked``: the whole image through its transparency map (``masked_image``),
  what a participant sees in the mask condition (MACO methods only).

Measures: own logit (mean over the views), margin (own minus the best other
unit's mean logit), plausibility (Deep-KNN as `maco-study evaluate`:
L2-normalised penultimate features, distance to the nearest natural image of
the class, mean over views), and, on crops only, FID of every crop's
penultimate features against the natural images'.

Ratios: ``maco`` and ``maco_no_carrier`` over ``horama``; ``olah`` over
``lucent``. Targets: logit and margin ratios >= 1 (whole image: >= 0.98),
plausibility and FID <= 1. ``ci95``: a 95% bootstrap interval of each ratio
(each method's images drawn again with replacement, per unit): what the draw
of seeds alone moves a ratio by. Last line: one JSON object, per network,
comparison and protocol. Contact sheets: ``<out stem>_<network>.png``.

    python benchmarks/bench_fv_quality.py [--steps 256] [--seeds 4] [--networks cnn,vit] [--out fv_quality.png] [--smoke]
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

import numpy as np
import timm
import torch
from PIL import Image, ImageDraw
from torch import nn

os.environ.setdefault("MACO_OFFLINE", "1")

from maco.evaluation.metrics import deep_knn_distance, logits, penultimate_features  # noqa: E402
from maco.images import stretch_contrast, to_pil  # noqa: E402
from maco.models import Model  # noqa: E402
from maco.optimize import maco, olah  # noqa: E402
from maco.spectra import load_spectrum  # noqa: E402
from maco.toy import train_toy  # noqa: E402
from maco.transforms import crop_and_resize, whole_image_boxes  # noqa: E402
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


def tiny_vit() -> nn.Module:
    return timm.models.VisionTransformer(img_size=INPUT, patch_size=8, num_classes=len(CLASSES), embed_dim=96,
                                         depth=4, num_heads=3)


NETWORKS = {"cnn": ShapesNet, "vit": tiny_vit}
COMPARISONS = {"maco": "horama", "maco_no_carrier": "horama", "olah": "lucent"}  # ours -> its reference
PROTOCOLS = ("crops", "whole", "masked")


def train(network: str, iterations: int) -> tuple[Model, float]:
    torch.manual_seed(0)  # the initial weights
    return train_toy(NETWORKS[network](), shapes, len(CLASSES), INPUT, iterations, f"shapes-{network}")


def run_ours(model: Model, unit: int, seed: int, args, spectrum, carrier: bool) -> tuple[torch.Tensor, torch.Tensor]:
    viz = maco(model, [unit], steps=args.steps, size=args.size, crops=args.crops, seed=seed,
               spectrum=spectrum, random_carrier=carrier, progress=False)[0]
    return viz.image, viz.transparency


def run_olah(model: Model, unit: int, seed: int, args) -> tuple[torch.Tensor, None]:
    return olah(model, [unit], steps=args.olah_steps, seed=seed, progress=False)[0].image, None


def run_lucent(model: Model, unit: int, seed: int, args) -> tuple[torch.Tensor, None]:
    """Lucent's render_vis: its Fourier image (decorrelated, sd 0.01), standard transforms, Adam 0.05."""
    from lucent.optvis import objectives, param, render

    class Logits(nn.Module):  # what Lucent hooks: the network's logits, inputs in [0, 1] (Model normalises)
        def __init__(self) -> None:
            super().__init__()
            self.logits = nn.Identity()

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.logits(model(images))

    torch.manual_seed(seed)
    objective = objectives.Objective(lambda hook: -hook("logits")[:, unit].mean())
    [image] = render.render_vis(Logits(), objective, lambda: param.image(model.input_size), preprocess=False,
                                fixed_image_size=model.input_size, thresholds=(args.olah_steps,), show_image=False,
                                progress=False)
    return torch.from_numpy(np.ascontiguousarray(image[0])).permute(2, 0, 1).float(), None


def run_horama(model: Model, unit: int, seed: int, args, workdir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    import horama

    torch.manual_seed(seed)  # Horama draws its phase and crops from the global generator
    with contextlib.chdir(workdir), contextlib.redirect_stderr(open(os.devnull, "w")):
        image, transparency = horama.maco(
            lambda images: model(images)[:, unit].mean(), total_steps=args.steps, learning_rate=1.0,
            image_size=args.size, model_input_size=model.input_size, crops_per_iteration=args.crops,
            values_range=(0.0, 1.0), device="cpu")
    return image.detach(), transparency.sum(0)


@dataclass
class Scores:
    """One protocol's per-image results for one method: a row per (unit, seed) image."""
    units: torch.Tensor  # (images,)
    seeds: torch.Tensor  # (images,)
    own_logit: torch.Tensor  # (images,) the unit's logit, mean over the views
    margin: torch.Tensor  # (images,) that minus the best other unit's mean logit
    plausibility: torch.Tensor  # (images,) Deep-KNN distance to the class's natural images, mean over the views
    features: torch.Tensor  # (images, views, features) penultimate features of every view


def score_boxes(crops: int, size: int) -> torch.Tensor:
    """The protocol's fixed crops: side ~N(0.25, 0.1) clipped to [0.1, 1], placed uniformly, seed 123.

    Fixed here rather than read from MACO's crop defaults, so that figures stay comparable when those change.
    """
    generator = torch.Generator().manual_seed(123)
    side = (torch.randn(crops, generator=generator) * 0.1 + 0.25).clamp(0.1, 1.0) * size
    x1, y1 = (torch.rand(crops, generator=generator) * (size - side) for _ in range(2))
    return torch.stack([torch.zeros(crops), x1, y1, x1 + side, y1 + side], dim=1)


def views(image: torch.Tensor, transparency: torch.Tensor | None, protocol: str, crops: int,
          input_size: int) -> torch.Tensor | None:
    """(views, 3, S, S) what a protocol shows the network of one image; None when it has no such view."""
    if protocol == "masked":
        if transparency is None:
            return None
        image = masked_image(image, transparency)
    size = image.shape[-1]
    boxes = score_boxes(crops, size) if protocol == "crops" else whole_image_boxes(1, size, size, image.device)
    return crop_and_resize(image.unsqueeze(0), boxes, input_size)


@torch.no_grad()
def score(model: Model, runs: list[tuple], natural: dict[int, torch.Tensor], protocol: str, crops: int
          ) -> Scores | None:
    """One protocol for every method: logits and penultimate features of the same views, no noise.

    ``runs``: (unit, seed, image, transparency) rows. None when the method has no view under the protocol.
    """
    own, margin, nearest, features = [], [], [], []
    for unit, _, image, transparency in runs:
        batch = views(image, transparency, protocol, crops, model.input_size)
        if batch is None:
            return None
        feats = penultimate_features(model, batch)
        mean_logits = logits(model, batch).mean(0)
        own.append(mean_logits[unit])
        margin.append(mean_logits[unit] - torch.cat([mean_logits[:unit], mean_logits[unit + 1:]]).max())
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
    """The measures over the images ``index`` (default all; repeats count): means, and FID when there are crops."""
    index = torch.arange(len(scores.units)) if index is None else index
    summary = {"own_logit": scores.own_logit[index].mean().item(), "margin": scores.margin[index].mean().item(),
               "plausibility": scores.plausibility[index].mean().item()}
    if scores.features.shape[1] > 1:  # one view per image is too few features for a covariance
        fid.reset()
        fid.update(scores.features[index].flatten(0, 1), real=False)
        summary["fid"] = float(fid.compute())
    return summary


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


def measure_network(network: str, args, spectrum, workdir: Path) -> dict:
    """Every method on one network; per comparison and protocol its ratios and their intervals."""
    model, accuracy = train(network, args.train_iterations)
    print(f"{network}: test accuracy {accuracy:.3f} on the four shapes", flush=True)
    units = list(range(len(CLASSES)))
    generator = torch.Generator().manual_seed(1)
    natural = {unit: penultimate_features(model, shapes(torch.full((200 if not args.smoke else 8,), unit), generator))
               for unit in units}
    runners = {"maco": lambda u, s: run_ours(model, u, s, args, spectrum, carrier=True),
               "maco_no_carrier": lambda u, s: run_ours(model, u, s, args, spectrum, carrier=False),
               "horama": lambda u, s: run_horama(model, u, s, args, workdir),
               "olah": lambda u, s: run_olah(model, u, s, args),
               "lucent": lambda u, s: run_lucent(model, u, s, args)}
    results = {method: [] for method in runners}
    seconds = dict.fromkeys(runners, 0.0)
    order = list(runners)
    for seed in range(args.seeds):
        for unit in units:
            for method in order:
                started = time.perf_counter()
                results[method].append((unit, seed, *runners[method](unit, seed)))
                seconds[method] += time.perf_counter() - started
            order = order[1:] + order[:1]  # who goes first rotates: load on the machine hits every method alike
        print(f"{network}: seed {seed} done", flush=True)
    fid = fid_metric(natural)
    report = {"network_accuracy": round(accuracy, 3)}
    for ours, theirs in COMPARISONS.items():
        report[ours] = {"time_ratio": round(seconds[ours] / seconds[theirs], 3)}
        for protocol in PROTOCOLS:
            mine, reference = (score(model, results[m], natural, protocol, args.score_crops) for m in (ours, theirs))
            if mine is None or reference is None:
                continue
            intervals = bootstrap_intervals(mine, reference, fid, args.resamples)
            report[ours][protocol] = {
                **{k: round(v, 3) for k, v in ratios(summarise(mine, fid), summarise(reference, fid)).items()},
                "ci95": {k: [round(v, 3) for v in bounds] for k, bounds in intervals.items()}}
            print(f"{network} {ours}/{theirs} {protocol}: {report[ours][protocol]}", flush=True)
    rows = []
    for index, (unit, seed, *_) in enumerate(results["maco"]):
        tiles = []
        for method in runners:
            image, transparency = results[method][index][2:]
            tiles.append(stretch_contrast(image))
            if transparency is not None:
                tiles.append(masked_image(stretch_contrast(image), transparency))
        rows.append((f"{CLASSES[unit]}, seed {seed}", tiles))
    columns = ["maco", "maco masked", "no carrier", "no carrier masked", "Horama", "Horama masked", "our Olah",
               "Lucent"]
    sheet = args.out.with_name(f"{args.out.stem}_{network}{args.out.suffix}")
    contact_sheet(rows, columns, sheet)
    print(f"contact sheet: {sheet}", flush=True)
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=256, help="MACO steps (ours and Horama)")
    parser.add_argument("--olah-steps", type=int, default=512, help="Olah steps (ours and Lucent)")
    parser.add_argument("--size", type=int, default=256, help="MACO image side")
    parser.add_argument("--crops", type=int, default=6)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--networks", default="cnn,vit")
    parser.add_argument("--train-iterations", type=int, default=300)
    parser.add_argument("--score-crops", type=int, default=64)
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap draws behind ci95")
    parser.add_argument("--out", type=Path, default=Path("fv_quality.png"), help="contact sheets: <stem>_<network>.png")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: a shared machine slows several threads down many times)")
    parser.add_argument("--smoke", action="store_true", help="tiny settings, for the test suite")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.smoke:
        args.steps, args.olah_steps, args.size, args.seeds, args.train_iterations, args.score_crops, args.resamples = (
            3, 3, 64, 1, 20, 4, 20)
    if not SPECTRUM.is_file():
        raise SystemExit(f"bench_fv_quality: the published spectrum is missing at {SPECTRUM}")
    spectrum = load_spectrum(SPECTRUM)
    summary = {}
    with tempfile.TemporaryDirectory() as workdir:
        os.symlink(SPECTRUM, Path(workdir) / "spectrum_decorrelated.npy")  # Horama reads it from the cwd
        for network in args.networks.split(","):
            summary[network] = measure_network(network, args, spectrum, Path(workdir))
    summary.update({"steps": args.steps, "olah_steps": args.olah_steps, "size": args.size, "crops": args.crops,
                    "seeds": args.seeds, "threads": torch.get_num_threads()})
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
