"""The ``lme4`` engine: R's lme4 (``glmer``) or, with a prior, blme (``bglmer``), in one ``Rscript`` run."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.diagnostics import FitWarning, classify
from analysis.engines import (
    INTERCEPT,
    EngineError,
    EngineFit,
    NormalPrior,
    RandomEffects,
    formula,
)

HESSIAN_VCOV = "lme4's vcov(): Hessian of the Laplace deviance"
RX_VCOV = "lme4's vcov(): RX approximation (lme4 fell back from a Hessian that was not positive definite)"
INSTALL = "apt-get install r-base-core r-cran-lme4 r-cran-blme"


def r_script() -> Path:
    return Path(str(resources.files("analysis.engines") / "glmer.R"))


def run_r(frame: pd.DataFrame, formulas: dict[str, list[str]], with_vcov: set[str], random: RandomEffects,
          prior: NormalPrior | None) -> pd.DataFrame:
    """The script's long table (model, kind, name, name2, name3, value), all text."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        raise EngineError(f"engine lme4 needs R: Rscript is not on PATH (Debian: {INSTALL})")
    with tempfile.TemporaryDirectory(prefix="maco-glmer-") as tmp:
        data, spec, out = Path(tmp, "data.csv"), Path(tmp, "models.tsv"), Path(tmp, "fits.csv")
        frame.to_csv(data, index=False)
        spec.write_text("".join(f"{name}\t{formula(cols, random)}\t{int(name in with_vcov)}\n"
                                for name, cols in formulas.items()))
        extra = [] if prior is None else [repr(prior.sd_intercept), repr(prior.sd)]
        done = subprocess.run([rscript, "--vanilla", str(r_script()), str(data), str(spec), str(out), *extra],
                              check=False, capture_output=True, text=True)
        if done.returncode != 0 or not out.exists():
            hint = f" (is blme installed? {INSTALL})" if "blme" in done.stderr else ""
            raise EngineError(f"Rscript failed ({done.returncode}){hint}: {done.stderr.strip()[-2000:]}")
        return pd.read_csv(out, dtype=str, keep_default_na=False)


def read_fit(part: pd.DataFrame, name: str, columns: list[str]) -> EngineFit:
    """One model's EngineFit from its rows of the long table."""

    def values(kind: str) -> pd.DataFrame:
        return part[part["kind"] == kind]

    def flag(kind: str) -> bool:
        return values(kind)["value"].iloc[0] == "TRUE"

    names = [INTERCEPT] + columns
    varcorr = values("varcorr").rename(columns={"name": "group", "name2": "var1", "name3": "var2", "value": "sdcor"})
    messages = [" ".join(m.split()) for m in values("message")["value"] if m]  # lme4 pads some with spaces
    found = [w for w in (classify(m, name) for m in messages) if w is not None]
    if not flag("optimizer_ok"):
        found.insert(0, FitWarning("optimizer", "optimiser did not converge (lme4's optinfo$conv$opt != 0)",
                                   "error", (name,)))
    if flag("singular") and not any(w.kind == "singular" for w in found):
        found.append(classify("boundary (singular) fit: see help('isSingular')", name))
    fit = EngineFit(
        beta=values("fixef").set_index("name")["value"].astype(float).reindex(names).to_numpy(),
        loglik=float(values("loglik")["value"].iloc[0]),
        npar=int(float(values("npar")["value"].iloc[0])),
        varcorr=varcorr[["group", "var1", "var2", "sdcor"]].astype({"sdcor": float}).reset_index(drop=True),
        converged=not any(w.kind in ("optimizer", "gradient", "hessian") for w in found),
        singular=flag("singular"),
        messages=messages,
        warnings=found,
    )
    v = values("vcov")
    if len(v):
        matrix = v.pivot(index="name", columns="name2", values="value").astype(float)
        fit.vcov = matrix.reindex(index=names, columns=names).to_numpy()
        modes, sds = values("ranef_mode"), values("ranef_sd")
        fit.ranef = pd.DataFrame({"group": modes["name3"].to_numpy(), "level": modes["name"].to_numpy(),
                                  "term": modes["name2"].to_numpy(), "mode": modes["value"].astype(float).to_numpy(),
                                  "cond_sd": sds["value"].astype(float).to_numpy()})
        rx = values("vcov_method")["value"].iloc[0] == "RX"
        fit.vcov_method = RX_VCOV if rx else HESSIAN_VCOV
        if rx and not any(w.kind == "vcov_rx" for w in found):
            fit.warnings.append(FitWarning("vcov_rx", RX_VCOV, "note", (name,)))
    return fit


def fit_lme4(
    frame: pd.DataFrame, formulas: dict[str, list[str]], with_vcov: set[str], random: RandomEffects,
    prior: NormalPrior | None,
) -> tuple[dict[str, EngineFit], dict[str, str]]:
    """As :func:`analysis.engines.mixedlm_engine.fit_mixedlm`, by R's lme4 (blme with a prior)."""
    long = run_r(frame, formulas, with_vcov, random, prior)
    fits = {name: read_fit(long[long["model"] == name], name, columns) for name, columns in formulas.items()}
    for fit in fits.values():
        if np.isnan(fit.beta).any():
            raise EngineError("lme4 dropped a fixed-effect column (rank-deficient design): " + ", ".join(fit.messages))
    return fits, long[long["kind"] == "version"].set_index("name")["value"].to_dict()
