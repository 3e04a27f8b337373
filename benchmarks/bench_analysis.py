"""Benchmark the analysis: each engine fits the study model on a simulated study, side by side with R.

Scenarios (default: all), on 200 participants x 60 main trials (20 per
network) with no simulated misbehaviour (a few may still fail a rule by
chance: `included` says how many are fitted):

- `intercepts`: the additive model with its two LRT refits, as `maco-study
  analyze` fits it; mixedlm against lme4::glmer.
- `prior`: the same study with every MACO trial correct (separation), fitted
  with `--prior normal`; mixedlm against blme::bglmer.
- `slopes`: `(1 + condition|unit)`, no LRT refits; mixedlm against lme4::glmer.
- `power` (only with `--power-reps N`): `maco-study power`'s loop for one participant count, N
  simulated studies on `--jobs` processes (simulation, validation, exclusions, fit, contrast), against
  an R loop fitting lme4::glmer to the same N studies' model rows (read from one CSV, only the loop
  timed), as a power analysis in R would. `speedup_vs_r` is R's time over ours, and the two powers
  (share of MACO vs Olah p < 0.05) are printed side by side.

The last line printed is one JSON object: per scenario, fit_s per engine,
the largest fixed-effect difference from R (max_beta_diff), the largest
relative standard-error difference (max_se_rel_diff), the largest difference
in random-effect SDs and correlations (max_varcorr_diff), the log-likelihood
difference (mixedlm minus R: positive = mixedlm found the higher optimum),
and the speed ratio (R's time over mixedlm's). R parts are null without
Rscript. The test suite runs it on a tiny study (tests/benchmarks/).

    python benchmarks/bench_analysis.py [--participants 200] [--trials-per-network 20]
        [--scenarios intercepts,prior,slopes] [--engines mixedlm,lme4] [--power-reps 200 --jobs 2]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.exclusions import model_rows, participant_table
from analysis.load import validate_export
from analysis.models import ModelSpec, build_design, fit_model
from analysis.power import power_curve, study_seeds
from analysis.simulate import GenerativeModel, simulate_export

SCENARIOS = {  # name: (ModelSpec options, separate MACO, LRT refits)
    "intercepts": ({}, False, True),
    "prior": ({"prior": "normal"}, True, True),
    "slopes": ({"random_slopes": True}, False, False),
}


def compare(fits: dict) -> dict:
    result = {"fit_s": {engine: round(fit.fit_s, 3) for engine, fit in fits.items()},
              "converged": {engine: fit.converged for engine, fit in fits.items()},
              "max_beta_diff": None, "max_se_rel_diff": None, "max_varcorr_diff": None, "loglik_diff": None,
              "speedup_vs_r": None}
    if len(fits) == 2:
        a, b = fits["mixedlm"], fits["lme4"]
        both = a.varcorr.merge(b.varcorr, on=["group", "var1", "var2"])
        result.update(
            max_beta_diff=float(np.abs(a.beta - b.beta).max()),
            max_se_rel_diff=float(np.abs(a.se / b.se - 1).max()),
            max_varcorr_diff=float(np.abs(both["sdcor_x"] - both["sdcor_y"]).max()),
            loglik_diff=float(a.loglik - b.loglik),
            speedup_vs_r=round(b.fit_s / a.fit_s, 2),
        )
    return result


# the R loop of a power analysis: glmer on each study, the Wald p of MACO vs Olah (condition[maco], olah the
# reference), as analysis.power does for its contrast
POWER_LOOP = r"""
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
d$condition <- relevel(factor(d$condition), ref = "olah")
d$network <- relevel(factor(d$network), ref = "resnet50")
started <- Sys.time()
p <- sapply(split(d, d$study), function(s) {
  m <- glmer(correct ~ condition + network + (1 | participant_id) + (1 | unit), data = s, family = binomial)
  z <- coef(summary(m))["conditionmaco", ]
  2 * pnorm(-abs(z["Estimate"] / z["Std. Error"]))
})
cat(as.numeric(Sys.time() - started, units = "secs"), mean(p < 0.05), "\n")
"""


def power_scenario(model: GenerativeModel, participants: int, reps: int, jobs: int, seed: int) -> dict:
    """``power_curve`` for one count on ``jobs`` processes against an R glmer loop over the same studies."""
    started = time.perf_counter()
    table = power_curve(model, [participants], reps=reps, seed=seed, jobs=jobs)
    ours_s = time.perf_counter() - started
    result = {"studies": reps, "jobs": jobs, "power_s": {"mixedlm": round(ours_s, 2)},
              "power": {"mixedlm": float(table["power"].iloc[0])}, "speedup_vs_r": None}
    rscript = shutil.which("Rscript")
    if rscript is None:
        return result
    frames = []
    for study, study_seed in enumerate(study_seeds(participants, reps, seed)):
        df = validate_export(simulate_export(model, participants, seed=study_seed))
        frames.append(model_rows(df, participant_table(df)).assign(study=study))
    with tempfile.TemporaryDirectory(prefix="bench-power-") as tmp:
        data, script = Path(tmp, "studies.csv"), Path(tmp, "loop.R")
        columns = ["study", "participant_id", "unit", "condition", "network", "correct"]
        pd.concat(frames)[columns].to_csv(data, index=False)
        script.write_text(POWER_LOOP)
        done = subprocess.run([rscript, "--vanilla", str(script), str(data)], capture_output=True, text=True,
                              check=True)
    r_s, r_power = (float(v) for v in done.stdout.split())
    result["power_s"]["lme4"] = round(r_s, 2)
    result["power"]["lme4"] = r_power
    result["speedup_vs_r"] = round(r_s / ours_s, 2)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=200)
    parser.add_argument("--trials-per-network", type=int, default=20)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--engines", default="mixedlm,lme4", help="lme4 is skipped without Rscript")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--power-reps", type=int, default=0, help="studies of the power scenario (0: skip it)")
    parser.add_argument("--jobs", type=int, default=2, help="processes of the power scenario")
    args = parser.parse_args(argv)

    model = replace(
        GenerativeModel(), main_trials_per_network=args.trials_per_network, p_inattentive=0.0, p_one_sided=0.0,
        p_rushed_instructions=0.0, p_dropout=0.0,
    )
    df = validate_export(simulate_export(model, args.participants, seed=args.seed))
    rows = model_rows(df, participant_table(df))
    engines = [e for e in args.engines.split(",") if e != "lme4" or shutil.which("Rscript")]
    result = {"participants": args.participants, "included": int(rows["participant_id"].nunique()),
              "trials": len(rows)}
    for name in args.scenarios.split(","):
        options, separate, lrt = SCENARIOS[name]
        data = rows.assign(correct=rows["correct"].where(~rows["condition"].eq("maco"), 1)) if separate else rows
        design = build_design(data, ModelSpec(**options), model.conditions, model.networks)
        fits = {engine: fit_model(design, engine=engine, lrt=lrt) for engine in engines}
        for engine, fit in fits.items():
            print(f"{name:10s} {engine:8s} fit {fit.fit_s:7.2f} s  converged {fit.converged}  "
                  + "  ".join(f"{t}={b:+.4f}({s:.4f})" for t, b, s in zip(fit.terms, fit.beta, fit.se)))
        result[name] = compare(fits)
    if args.power_reps:
        result["power"] = power_scenario(replace(GenerativeModel(), main_trials_per_network=args.trials_per_network),
                                         args.participants, args.power_reps, args.jobs, args.seed)
        print(f"power      {result['power']}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
