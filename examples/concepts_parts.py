"""Concepts of a network trained here, with no downloaded weights: `python examples/concepts_parts.py OUT`.

Trains the small CNN of ``applications.parts`` on three classes made of two
parts each (a minute on a laptop CPU), saves 24 images of class 0 (a red disk
and green stripes) and runs what `maco-study concepts` runs on them, at the
layer where the two parts are distinct concepts. Then `maco-study gallery OUT`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from applications.concepts_cli import write_concepts
from applications.parts import draw, parts_cnn_net, train_on_parts
from applications.runs import load_images, run_settings, write_json
from maco.concepts import concept_objectives, extract_concepts
from maco.images import to_pil
from maco.models import Model
from maco.optimize import maco
from maco.spectra import resolve_spectrum

SIZE, LAYER, STEPS, RENDER = 48, "4", 128, 128


def main(out: Path) -> None:
    torch.manual_seed(0)
    net = parts_cnn_net()
    model = Model(net=net, name="parts-cnn", input_size=SIZE, mean=(0.5,) * 3, std=(0.25,) * 3,
                  weights="trained by examples/concepts_parts.py", num_classes=3)
    print(f"held-out accuracy {train_on_parts(net, model, steps=300):.2f}")
    folder = out / "images"
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(1)
    files = []
    for number in range(24):
        files.append(folder / f"class0_{number:02d}.png")
        to_pil(draw(0, (True, True), generator, SIZE)[0]).save(files[-1])
    images = load_images(files, SIZE)
    found = extract_concepts(model, LAYER, images, 0, concepts=3, patches_per_image=32, patch_fraction=0.4)
    spectrum = resolve_spectrum(RENDER)
    vizs = maco(model, objectives=concept_objectives(found.basis, found.ranking), steps=STEPS, size=RENDER, crops=4,
                spectrum=spectrum)
    write_concepts(out, model, found, vizs, images, files, folder, 0.4)
    write_json(out / "run.json", run_settings("concepts", model, spectrum, class_index=0, layer=LAYER, concepts=3,
                                              steps=STEPS, size=RENDER, example="examples/concepts_parts.py"))
    print(f"wrote {out}/concepts.png; importance {found.importance.tolist()}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
