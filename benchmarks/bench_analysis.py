"""Benchmark the analysis: fit the study model with each engine on a simulated study.

Default: 200 participants x 60 main trials (20 per network), with no simulated
misbehaviour (a few may still fail a rule by chance: `included` says how many
are fitted), the additive model with its two LRT refits, as `maco-study
analyze` fits it. The last line printed is one JSON object:
fit_s per engine, max_engine_diff (largest fixed-effect difference from lme4)
and max_se_rel_diff (largest relative standard-error difference), when R is
present.

    python benchmarks/bench_analysis.py [--participants 200] [--trials-per-network 20]
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace

import numpy as np

from analysis.exclusions import model_rows, participant_table
from analysis.load import validate_export
from analysis.models import ModelSpec, build_design, fit_model
from analysis.simulate import GenerativeModel, simulate_export


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=200)
    parser.add_argument("--trials-per-network", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    model = replace(
        GenerativeModel(), main_trials_per_network=args.trials_per_network, p_inattentive=0.0, p_one_sided=0.0,
        p_rushed_instructions=0.0, p_dropout=0.0,
    )
    start = time.perf_counter()
    df = validate_export(simulate_export(model, args.participants, seed=args.seed))
    rows = model_rows(df, participant_table(df))
    design = build_design(rows, ModelSpec(), model.conditions, model.networks)
    prepare_s = time.perf_counter() - start

    engines = ["mixedlm"] + (["lme4"] if shutil.which("Rscript") else [])
    fits = {}
    for engine in engines:
        fits[engine] = fit_model(design, engine=engine)
        fit = fits[engine]
        print(f"{engine:8s} fit {fit.fit_s:6.2f} s  converged {fit.converged}  "
              + "  ".join(f"{t}={b:+.4f}({s:.4f})" for t, b, s in zip(fit.terms, fit.beta, fit.se)))
    result = {
        "participants": args.participants,
        "included": int(rows["participant_id"].nunique()),
        "trials": len(rows),
        "prepare_s": round(prepare_s, 3),
        "fit_s": {engine: round(fit.fit_s, 3) for engine, fit in fits.items()},
        "max_engine_diff": None,
        "max_se_rel_diff": None,
    }
    if "lme4" in fits:
        a, b = fits["mixedlm"], fits["lme4"]
        result["max_engine_diff"] = float(np.abs(a.beta - b.beta).max())
        result["max_se_rel_diff"] = float(np.abs(a.se / b.se - 1).max())
        result["speedup_vs_lme4"] = round(b.fit_s / a.fit_s, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
