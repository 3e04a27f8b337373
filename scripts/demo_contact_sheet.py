"""A contact sheet of a bundle's references: per network and unit, its top pool image, MACO and Olah.

    python scripts/demo_contact_sheet.py --bundle maco-demo/bundle [--out docs/demo-maco-vs-olah.png] [--refs 3]

One block per network (the demo's: small networks trained on the synthetic task), one row per unit
(labelled with its class), columns: the base image of the unit's first query pair (its top image),
then ``--refs`` MACO references and as many Olah references, each at 96 px.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

from stimuli.manifest import image_path, load_manifest

TILE = 96
LABEL_W = 150
HEADER_H = 22


def tile(bundle: Path, image_id: str) -> Image.Image:
    with Image.open(image_path(bundle, image_id)) as image:
        return image.convert("RGB").resize((TILE, TILE), Image.Resampling.BILINEAR)


def contact_sheet(bundle: Path, refs: int) -> Image.Image:
    manifest = load_manifest(bundle)
    sets = {(r.unit, r.condition): r.images for r in manifest.references}
    base = {}
    for pair in manifest.query_pairs:
        base.setdefault(pair.unit, pair.base_image)
    networks = {n.key: n for n in manifest.networks}
    training = manifest.provenance.get("network_training", {})
    columns = 1 + 2 * refs
    rows = [(u, networks[u.network]) for u in manifest.units]
    blocks = len(networks)
    sheet = Image.new("RGB", (LABEL_W + columns * TILE, HEADER_H * (blocks + 1) + len(rows) * TILE), "white")
    draw = ImageDraw.Draw(sheet)
    titles = ["top image"] + [f"MACO {i + 1}" for i in range(refs)] + [f"Olah {i + 1}" for i in range(refs)]
    for c, title in enumerate(titles):
        draw.text((LABEL_W + c * TILE + 4, 4), title, fill="black")
    y, current = HEADER_H, None
    for unit, network in rows:
        if network.key != current:
            current = network.key
            accuracy = training.get(network.key, {}).get("held_out_accuracy")
            detail = f", {float(accuracy):.1%} held-out" if accuracy else f", weights {network.weights}"
            draw.text((4, y + 4), f"{network.key} ({network.timm_name}{detail})", fill="black")
            y += HEADER_H
        draw.text((4, y + TILE // 2 - 6), unit.label, fill="black")
        images = [base[unit.key]] + sets[(unit.key, "maco")][:refs] + sets[(unit.key, "olah")][:refs]
        for c, image_id in enumerate(images):
            sheet.paste(tile(bundle, image_id), (LABEL_W + c * TILE, y))
        y += TILE
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("docs/demo-maco-vs-olah.png"))
    parser.add_argument("--refs", type=int, default=3, help="MACO and Olah references per unit")
    args = parser.parse_args()
    contact_sheet(args.bundle, args.refs).save(args.out, optimize=True)
    print(args.out)


if __name__ == "__main__":
    main()
