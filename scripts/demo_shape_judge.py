"""How many of a bundle's MACO and Olah references show their class's shape, by a colour-blind judge.

    python scripts/demo_shape_judge.py --bundle before=maco-demo-old/bundle --bundle after=maco-demo/bundle

Trains ``demo.shape_judge``'s judge (about 20 s on 2 cores; it sees shapes, not colours), checks it
on the first bundle's pool photos, then per bundle, network and method prints how many references
the judge sees as their unit's class's shape (chance: 1 in 6) and what it sees on each unit. The
last line is one JSON object: the fractions per bundle and method, and after / before.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from demo.shape_judge import load_images, shape_scores, train_judge
from demo.task import CLASSES


def labelled(text: str) -> tuple[str, Path]:
    label, _, path = text.rpartition("=")
    return (label or Path(path).parent.name), Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=labelled, action="append", required=True, help="[LABEL=]BUNDLE, repeatable")
    args = parser.parse_args()
    judge = train_judge()
    print(f"judge: {judge.accuracy:.1%} held-out (objects in random class colours)")
    pool = args.bundle[0][1].parent / "pool"
    if pool.is_dir():  # the demo's pool: crisp objects in their classes' colours
        files = [(index, path) for index, c in enumerate(CLASSES) for path in sorted(pool.glob(f"{c.name.replace(' ', '_')}/*.png"))]
        seen = judge.shapes(load_images([p for _, p in files])).tolist()
        print(f"judge on the pool: {sum(s == i for (i, _), s in zip(files, seen))} of {len(files)} photos' shapes")
    result: dict[str, dict[str, float]] = {}
    for label, bundle in args.bundle:
        rows = shape_scores(bundle, judge)
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
    print(json.dumps({"judge_accuracy": round(judge.accuracy, 3), **result}))


if __name__ == "__main__":
    main()
