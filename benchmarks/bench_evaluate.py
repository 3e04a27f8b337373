"""The paper's benchmark (`maco-study evaluate`'s metrics) on a small network trained in seconds.

Task: tell apart crops of four of scikit-image's photos (astronaut, coffee,
chelsea, rocket). Three more small CNNs trained on the same task stand in for
the paper's other classifiers (two for transferability) and for Inception-v3
(FID features). Every variant visualizes the four classes with the same
steps and seeds; a second held-out set of natural crops, scored like a
visualization, is the reference: the best a visualization could do.

Last line: one JSON object: for each variant, its plausibility, FID, logit and
transferability over MACO's (``<variant>_over_maco``), and MACO's over the
natural reference (``maco_over_natural``); ``tables`` has the raw figures.

    python benchmarks/bench_evaluate.py [--steps 128] [--size 128] [--seeds 0,1] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
from pathlib import Path

import torch
from PIL import Image
from torch import nn

os.environ.setdefault("MACO_OFFLINE", "1")

from maco.evaluation.metrics import FrechetDistance, PenultimateFeatures, penultimate_features  # noqa: E402
from maco.evaluation.report import contact_sheet, markdown_tables  # noqa: E402
from maco.evaluation.run import evaluate, fid_view, model_view, score_variant  # noqa: E402
from maco.evaluation.variants import VARIANTS, Variant  # noqa: E402
from maco.images import from_pil  # noqa: E402
from maco.models import Model  # noqa: E402
from maco.optimize import Visualization  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
INPUT = 64
METRICS = ("plausibility", "fid", "logit", "transferability")


def photos() -> list[Image.Image]:
    import skimage.data

    return [Image.fromarray(getattr(skimage.data, name)()) for name in PHOTOS]


def random_crop(photo: Image.Image, rng: random.Random) -> Image.Image:
    """A square crop of 35-70% of the photo's shorter side, maybe mirrored, at the input size."""
    side = int(min(photo.size) * rng.uniform(0.35, 0.7))
    left, top = rng.randint(0, photo.width - side), rng.randint(0, photo.height - side)
    crop = photo.crop((left, top, left + side, top + side)).resize((INPUT, INPUT), Image.Resampling.BICUBIC)
    return crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop


def small_cnn(widths: tuple[int, ...], kernel: int) -> nn.Module:
    layers, channels = [], 3
    for width in widths:
        layers += [nn.Conv2d(channels, width, kernel, padding=kernel // 2), nn.ReLU(), nn.MaxPool2d(2)]
        channels = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, len(PHOTOS)))


def train(name: str, widths: tuple[int, ...], kernel: int, sources: list[Image.Image], steps: int,
          seed: int) -> Model:
    """A ``small_cnn`` trained on crops of ``sources``; the seed fixes its initial weights and its crops."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    net = small_cnn(widths, kernel)
    model = Model(net=net, name=name, input_size=INPUT, mean=(0.5,) * 3, std=(0.25,) * 3,
                  weights=f"trained here ({steps} steps)", num_classes=len(PHOTOS))
    net.train()
    for parameter in net.parameters():
        parameter.requires_grad_(True)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(steps):
        labels = [rng.randrange(len(PHOTOS)) for _ in range(32)]
        images = torch.stack([from_pil(random_crop(sources[label], rng)) for label in labels])
        loss = nn.functional.cross_entropy(model(images), torch.tensor(labels))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return Model(net=net, name=name, input_size=INPUT, mean=(0.5,) * 3, std=(0.25,) * 3, weights=model.weights,
                 num_classes=len(PHOTOS))  # frozen, eval mode


def natural_reference(network: Model, natural, held_out, transfer, fid: FrechetDistance) -> dict:
    """Held-out natural crops scored exactly like visualizations."""
    features = {unit: penultimate_features(network, model_view(images, INPUT)) for unit, images in natural.items()}
    shown = [Visualization(unit=unit, method="natural", seed=0, image=from_pil(image), objective=0.0, history=[])
             for unit, images in held_out.items() for image in images]
    return score_variant(network, Variant("natural", "Natural images (held out)", "natural"), shown, features,
                         fid, transfer)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=128, help="optimisation steps of every method")
    parser.add_argument("--size", type=int, default=128, help="working image side of every method")
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--natural", type=int, default=16, help="natural crops per class")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated [all seven]")
    parser.add_argument("--out", type=Path, help="folder for tables.md and the contact sheet [a temporary one]")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_evaluate_"))
    out.mkdir(parents=True, exist_ok=True)

    sources = photos()
    network = train("cnn", (16, 32, 64), 3, sources, args.train_steps, seed=0)
    transfer = {"wide": train("wide", (24, 48), 5, sources, args.train_steps, seed=1),
                "deep": train("deep", (16, 16, 32, 64), 3, sources, args.train_steps, seed=2)}
    fid_network = train("fid", (32, 64, 96), 3, sources, args.train_steps, seed=3)
    rng = random.Random(4)
    natural = {u: [random_crop(p, rng) for _ in range(args.natural)] for u, p in enumerate(sources)}
    seeds = [int(s) for s in args.seeds.split(",")]
    # as many held-out crops as visualizations per class: FID's small-sample bias is then the same
    held_out = {u: [random_crop(p, rng) for _ in seeds] for u, p in enumerate(sources)}

    variants = [VARIANTS[name] for name in args.variants.split(",")]
    result = evaluate([network], list(range(len(PHOTOS))), natural, variants, PenultimateFeatures(fid_network),
                      transfer, seeds=seeds,
                      method_options={"steps": args.steps, "size": args.size}, progress=False)
    fid = FrechetDistance(PenultimateFeatures(fid_network)).add_natural(
        fid_view([image for images in natural.values() for image in images]))
    reference = natural_reference(network, natural, held_out, transfer, fid)
    summary = {s["variant"]: s for s in result.summary}
    summary["natural"] = reference

    (out / "tables.md").write_text(markdown_tables(result.summary, {v.name: v for v in variants}, list(transfer)))
    contact_sheet(result.visualizations["cnn"], variants, f"bench_evaluate: {', '.join(PHOTOS)}").save(
        out / "contact_sheet.png")
    print((out / "tables.md").read_text())
    print("natural reference: " + ", ".join(f"{m} {reference[m]:.4g}" for m in METRICS))
    print(f"wrote {out / 'tables.md'} and {out / 'contact_sheet.png'}")

    def ratios(numerator: str, denominator: str) -> dict:
        return {m: (summary[numerator][m] / summary[denominator][m] if summary[denominator][m] else None)
                for m in METRICS}

    report = {f"{name}_over_maco": ratios(name, "maco") for name in summary if name not in ("maco", "natural")}
    report["maco_over_natural"] = ratios("maco", "natural")
    report["tables"] = {name: {m: round(s[m], 4) for m in METRICS} for name, s in summary.items()}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
