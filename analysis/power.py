"""Power to detect MACO vs Olah, estimated by simulating and analysing whole studies."""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
from scipy import stats

from analysis.exclusions import ExclusionRules
from analysis.load import validate_export
from analysis.models import ModelSpec
from analysis.pipeline import run_analysis
from analysis.report import trusted
from analysis.simulate import GenerativeModel, simulate_export

CONTRAST = "maco_vs_olah"  # the one contrast each simulated study tests (analysis.contrasts.CATALOGUE)


def parse_range(text: str) -> list[int]:
    """``40:240:40`` (inclusive), ``40,80,120`` or ``100``."""
    try:
        if ":" in text:
            start, stop, *step = (int(part) for part in text.split(":"))
            values = list(range(start, stop + 1, step[0] if step else 1))
        else:
            values = [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"not a range of participant counts: {text!r} (e.g. 40:240:40)") from None
    if not values or min(values) < 2:
        raise ValueError(f"participant counts must be at least 2: {text!r}")
    return values


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    alpha = 1 - level
    lower = stats.beta.ppf(alpha / 2, k, n - k + 1) if k > 0 else 0.0
    upper = stats.beta.ppf(1 - alpha / 2, k + 1, n - k) if k < n else 1.0
    return float(lower), float(upper)


def study_seeds(participants: int, reps: int, seed: int = 0) -> list[int]:
    """The seeds of the ``reps`` simulated studies of one participant count (the benchmark's R loop reuses them)."""
    return [int(np.random.SeedSequence([seed, participants, r]).generate_state(1)[0]) for r in range(reps)]


def _one_study(task: tuple) -> dict:
    model, n, seed, engine, rules, spec = task
    df = validate_export(simulate_export(model, n, seed=seed))
    try:
        analysis = run_analysis(df, spec=spec, engine=engine, rules=rules, lrt=False, contrasts=[CONTRAST],
                                sensitivity=False, secondary=False)
    except Exception as error:  # noqa: BLE001 - a study that cannot be fitted counts as not detected
        return {"participants": n, "ok": False, "error": f"{type(error).__name__}: {error}"}
    row = analysis.contrasts.iloc[0]
    return {
        "participants": n,
        "ok": True,
        "trusted": trusted(analysis.fit),
        "estimate": float(row["estimate"]),
        "se": float(row["se"]),
        "p": float(row["p"]),
        "included": int((~analysis.participants["excluded"]).sum()),
    }


def power_curve(
    model: GenerativeModel,
    participants: list[int],
    reps: int = 100,
    alpha: float = 0.05,
    seed: int = 0,
    engine: str = "mixedlm",
    rules: ExclusionRules = ExclusionRules(),
    jobs: int = 1,
    progress=None,
) -> pd.DataFrame:
    """Share of simulated studies whose MACO vs Olah Wald test has p < alpha in the true direction.

    ``participants`` counts everyone recruited (all conditions, before exclusions). A study counts
    as detected only when its fit is one ``analyze`` would accept (``report.trusted``: converged,
    no diagnosed problem); the others are counted in ``untrusted_fits``, as failed fits are in
    ``failed_fits``: a real study whose fit ``analyze`` refuses has detected nothing.
    """
    spec = ModelSpec()
    truth = model.condition_effects["maco"] - model.condition_effects["olah"]
    tasks = [(model, n, study_seed, engine, rules, spec) for n in participants for study_seed in study_seeds(n, reps, seed)]
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            results = []
            for result in pool.map(_one_study, tasks, chunksize=max(1, len(tasks) // (8 * jobs))):
                results.append(result)
                if progress:
                    progress(1)
    else:
        results = []
        for task in tasks:
            results.append(_one_study(task))
            if progress:
                progress(1)
    rows = []
    for n in participants:
        mine = [r for r in results if r["participants"] == n]
        fitted = [r for r in mine if r["ok"]]
        detected = sum(r["trusted"] and r["p"] < alpha and np.sign(r["estimate"]) == np.sign(truth) for r in fitted)
        lower, upper = clopper_pearson(detected, len(mine))
        errors = [r["error"] for r in mine if not r["ok"]]
        rows.append(
            {
                "participants": n,
                "studies": len(mine),
                "failed_fits": len(errors),
                "untrusted_fits": sum(not r["trusted"] for r in fitted),
                "first_error": errors[0] if errors else "",
                "detected": detected,
                "power": detected / len(mine),
                "ci_lower": lower,
                "ci_upper": upper,
                "mean_included": float(np.mean([r["included"] for r in fitted])) if fitted else np.nan,
                "mean_estimate": float(np.mean([r["estimate"] for r in fitted])) if fitted else np.nan,
                "mean_se": float(np.mean([r["se"] for r in fitted])) if fitted else np.nan,
                "true_effect": truth,
                "alpha": alpha,
            }
        )
    return pd.DataFrame(rows)
