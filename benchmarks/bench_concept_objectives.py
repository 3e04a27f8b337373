"""Which objective makes a CRAFT concept's MACO visualization show that concept? Measured side by side.

A small CNN is trained here on three classes made of two parts each
(``applications.parts``); CRAFT finds three concepts per class at its second
block (the two parts and the ground). Every concept of every class is
visualized with MACO under each objective, for each seed; then each
visualization is read back in CRAFT's own non-negative concept space:
pooled features of fixed random crops (``view="crops"``, what the
optimisation saw) or of the whole image resized to the input (``"whole"``,
what a reader sees), their NMF coefficients against W held fixed
(``ConceptBasis.coefficients``), each times its concept vector's norm (the
size of that concept's part of the reconstruction). The check: does the
visualization of concept k express concept k most?

Objectives (``maco.concepts.CONCEPT_OBJECTIVES``): ``dual`` (dot with row k
of pinv(W)^T, the least-squares read-out), ``raw`` (dot with W_k),
``raw_cos1`` and ``raw_cos2`` (dot with W_k times cos(h, W_k)^p, Olah et
al.'s direction with cosine emphasis).

Last line: one JSON object: per objective and view, the fraction of
visualizations that express their own concept most (``own_most``), the mean
share of their own concept in their expression (``own_share``), and the
fraction of their least-squares coefficients that are negative
(``negative_lsq``: outside the non-negative space CRAFT factorised).

    python benchmarks/bench_concept_objectives.py [--seeds 3] [--steps 64] [--smoke]
"""
from __future__ import annotations

import json

import click
import torch

from applications.parts import CLASS_PARTS, draw, parts_cnn_net, train_on_parts
from maco.concepts import CONCEPT_OBJECTIVES, concept_directions, concept_objectives, extract_concepts
from maco.craft import layer_activations, pooled_features
from maco.models import Model
from maco.optimize import maco
from maco.spectra import ANALYTIC, choose_spectrum
from maco.transforms import crop_and_resize, maco_crop_boxes

LAYER = "4"  # the second block: there a class's two parts are distinct concepts (tests/applications)
CONCEPTS = 3
SIZE = 48


def trained_network(steps: int) -> Model:
    torch.manual_seed(0)
    net = parts_cnn_net()
    model = Model(net=net, name="parts-cnn", input_size=SIZE, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                  weights="trained here", num_classes=len(CLASS_PARTS))
    accuracy = train_on_parts(net, model, steps)
    print(f"parts CNN: held-out accuracy {accuracy:.3f}")
    return model


def expression(model: Model, basis, images: torch.Tensor, view: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(V, K) each visualization's concept expression, and (V, K) its least-squares coefficients."""
    if view == "crops":
        count = 16
        boxes = maco_crop_boxes(len(images), count, images.shape[-1], images.shape[-1], torch.Generator().manual_seed(5))
        batch = crop_and_resize(images, boxes, model.input_size)
    else:
        count = 1
        batch = torch.nn.functional.interpolate(images, size=model.input_size, mode="bilinear", antialias=True)
    features = pooled_features(layer_activations(model, LAYER, batch)).view(len(images), count, -1).mean(dim=1)
    return basis.coefficients(features) * basis.vectors.norm(dim=1), features @ concept_directions(basis).T


@click.command()
@click.option("--seeds", type=int, default=3, show_default=True)
@click.option("--steps", type=int, default=64, show_default=True, help="MACO steps per visualization")
@click.option("--size", type=int, default=96, show_default=True, help="MACO image side")
@click.option("--train-steps", type=int, default=100, show_default=True)
@click.option("--smoke", is_flag=True, help="one class, one seed, a few steps (the test suite runs this)")
def main(seeds, steps, size, train_steps, smoke):
    classes = range(1 if smoke else len(CLASS_PARTS))
    if smoke:
        seeds, steps, size, train_steps = 1, 4, 64, 20
    model = trained_network(train_steps)
    spectrum = choose_spectrum(ANALYTIC)  # the same in every run, online or not
    results = {name: {"crops": [], "whole": []} for name in CONCEPT_OBJECTIVES}
    for label in classes:
        generator = torch.Generator().manual_seed(1)
        images = torch.stack([draw(label, (True, True), generator, SIZE)[0] for _ in range(12)])
        found = extract_concepts(model, LAYER, images, label, concepts=CONCEPTS, patches_per_image=32,
                                 patch_fraction=0.4, importance_images=4)
        for seed in range(seeds):
            for name in CONCEPT_OBJECTIVES:
                vizs = maco(model, objectives=concept_objectives(found.basis, list(range(CONCEPTS)), name),
                            steps=steps, size=size, crops=4, seed=seed, spectrum=spectrum, progress=False)
                pictures = torch.stack([v.image for v in vizs])
                for view in ("crops", "whole"):
                    expressed, least_squares = expression(model, found.basis, pictures, view)
                    results[name][view].append((expressed, least_squares))
    summary = {}
    for name, views in results.items():
        summary[name] = {}
        for view, runs in views.items():
            expressed = torch.stack([e for e, _ in runs])  # (runs, K visualizations, K concepts)
            least_squares = torch.stack([q for _, q in runs])
            own = expressed.diagonal(dim1=1, dim2=2)
            summary[name][view] = {
                "own_most": round(float((expressed.argmax(dim=2) == torch.arange(CONCEPTS)).float().mean()), 3),
                "own_share": round(float((own / expressed.sum(dim=2).clamp(min=1e-12)).mean()), 3),
                "negative_lsq": round(float((least_squares < 0).float().mean()), 3),
            }
            print(f"{name:9s} {view:5s} {summary[name][view]}")
    print(json.dumps({"concepts": CONCEPTS * len(classes), "seeds": seeds, "steps": steps, **summary}))


if __name__ == "__main__":
    main()
