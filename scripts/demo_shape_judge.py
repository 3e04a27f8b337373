"""How many of a bundle's MACO and Olah references show their class's shape, by ``demo.shape_judge``.

    python scripts/demo_shape_judge.py --bundle before=maco-demo-old/bundle --bundle after=maco-demo/bundle

Checks the judge on the first bundle's pool photos (the demo folder's ``pool``), then per bundle,
network and method prints how many references the judge sees as their unit's class's shape (a
shapeless blob counts for the disk only: 1 unit in 6) and what it sees on each unit. The last line
is one JSON object: the fractions per bundle and method, and after / before.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch

from demo.shape_judge import judge_shapes, load_images, shape_scores
from demo.task import CLASSES


def labelled(text: str) -> tuple[str, Path]:
    label, _, path = text.rpartition("=")
    return (label or Path(path).parent.name), Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=labelled, action="append", required=True, help="[LABEL=]BUNDLE, repeatable")
    args = parser.parse_args()
    result: dict[str, dict[str, float]] = {}
    pool = args.bundle[0][1].parent / "pool"
    if pool.is_dir():  # the demo's pool: crisp objects in their classes' colours
        files = [(index, path) for index, c in enumerate(CLASSES) for path in sorted(pool.glob(f"{c.name.replace(' ', '_')}/*.png"))]
        classes = torch.tensor([i for i, _ in files])
        seen = judge_shapes(load_images([p for _, p in files]), classes)
        result["pool"] = {"judge_accuracy": round((seen == classes).float().mean().item(), 3)}
        print(f"judge on the pool: {(seen == classes).sum()} of {len(files)} photos' shapes")
    for label, bundle in args.bundle:
        rows = shape_scores(bundle)
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        print(f"\n{label} ({bundle})")
        for network in sorted({r["network"] for r in rows}):
            for condition in ("maco", "olah"):
                mine = [r for r in rows if r["network"] == network and r["condition"] == condition]
                shown, refs = sum(r["shape_shown"] for r in mine), sum(r["references"] for r in mine)
                totals[condition][0] += shown
                totals[condition][1] += refs
                units = sum(r["shape_shown"] > r["references"] / 2 for r in mine)
                print(f"  {network} {condition}: {shown} of {refs} references show the shape; "
                      f"{units} of {len(mine)} units on most of theirs")
                for r in mine:
                    print(f"    {r['unit']}: {r['shape_shown']}/{r['references']}  judged {', '.join(r['judged'])}")
        result[label] = {condition: round(shown / refs, 3) for condition, (shown, refs) in totals.items()}
    if len(args.bundle) == 2:
        (before, _), (after, _) = args.bundle
        result["after_over_before"] = {c: round(result[after][c] / max(result[before][c], 1e-9), 2) for c in result[after]}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
