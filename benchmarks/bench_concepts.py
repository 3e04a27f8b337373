"""CRAFT's Sobol importance: the layer's output widened to every mask against the image fed once per mask.

Both paths run side by side on the same random-weight timm network, concepts
and images (importance needs no trained weights to cost what it costs), and
must give the same indices. Last line: one JSON object of ratios.

    python benchmarks/bench_concepts.py [--model resnet50 --layer layer3 --images 4] [--smoke]
"""
from __future__ import annotations

import json
import time

import click
import torch

from maco.craft import fit_concepts, layer_activations, pooled_features, sobol_importance
from maco.models import load_model


@click.command()
@click.option("--model", "model_name", default="resnet50", show_default=True)
@click.option("--layer", default="layer3", show_default=True)
@click.option("--images", "image_count", type=int, default=4, show_default=True)
@click.option("--concepts", type=int, default=10, show_default=True)
@click.option("--repeats", type=int, default=3, show_default=True)
@click.option("--smoke", is_flag=True, help="a tiny network and one image (the test suite runs this)")
def main(model_name, layer, image_count, concepts, repeats, smoke):
    if smoke:
        model_name, layer, image_count, concepts, repeats = "test_resnet", "layer3", 1, 3, 1
    torch.manual_seed(0)
    model = load_model(model_name, weights="random")
    images = torch.rand(image_count, 3, model.input_size, model.input_size)
    patches = torch.rand(4 * concepts, 3, model.input_size, model.input_size)
    basis, _ = fit_concepts(pooled_features(layer_activations(model, layer, patches)), layer, concepts)
    seconds = {True: [], False: []}
    results = {}
    for _ in range(repeats):
        for widen in (True, False):  # interleaved, so that load on the machine hits both alike
            started = time.perf_counter()
            results[widen] = sobol_importance(model, basis, images, class_index=1, widen=widen)
            seconds[widen].append(time.perf_counter() - started)
    assert torch.allclose(results[True], results[False], rtol=1e-3, atol=1e-5), results
    widened, repeated = min(seconds[True]), min(seconds[False])
    print(f"{model_name} {layer}: {image_count} images, {concepts} concepts; widened {widened:.2f} s, "
          f"repeated {repeated:.2f} s (best of {repeats})")
    print(json.dumps({"model": model_name, "layer": layer, "widened_over_repeated": round(widened / repeated, 3)}))


if __name__ == "__main__":
    main()
