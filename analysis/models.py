"""Logistic mixed models of a correct choice, fitted as lme4's ``glmer`` does.

``correct ~ condition + network + (1|participant) + (1|unit)`` (optionally
``+ condition:network``), binomial logit, Laplace approximation. The export's
``unit`` key is unique across networks (``<network>:<class_index>``), so class
281 of vgg16 and class 281 of resnet50 are different units.

Both engines get the same design: treatment dummies built here, named
``condition[maco]``, ``network[vit_b16]`` and ``condition[maco]:network[vgg16]``
against configurable reference levels.

- ``mixedlm`` (default): the ``mixedlm`` package's ``glmer`` (Rust core).
  Standard errors come, like lme4's default ``vcov`` for a GLMM, from the
  finite-difference Hessian of the Laplace deviance in (theta, beta); where it
  is not positive definite they fall back to the fixed-effect information at
  the estimated theta (lme4's ``use.hessian = FALSE``), and the fit says so.
- ``lme4``: R's lme4 through ``Rscript`` (``analysis/glmer.R``).
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

INTERCEPT = "(Intercept)"
GROUPS = ("participant", "unit")
ENGINES = ("mixedlm", "lme4")


class EngineError(RuntimeError):
    """The engine is missing or failed."""


@dataclass(frozen=True)
class ModelSpec:
    ref_condition: str = "olah"
    ref_network: str = "resnet50"
    interaction: bool = False

    @property
    def formula(self) -> str:
        fixed = "condition + network" + (" + condition:network" if self.interaction else "")
        return f"correct ~ {fixed} + (1|participant) + (1|unit)"


@dataclass
class Design:
    """The model frame (``y``, groups, dummy columns ``x1..xk``) and its term names."""

    frame: pd.DataFrame
    spec: ModelSpec
    conditions: list[str]  # reference first
    networks: list[str]  # reference first
    terms: list[str]  # readable names, intercept first, aligned with ``columns``
    columns: list[str]  # frame columns, "(Intercept)" first
    blocks: dict[str, list[str]]  # "condition" / "network" / "condition:network" -> columns
    # per column after the intercept: the (condition, network) it indicates; None = any
    levels: list[tuple[str | None, str | None]]

    def row(self, condition: str, network: str) -> np.ndarray:
        """The design row of one cell (population level, random effects at zero)."""
        return np.array(
            [1.0] + [float(c in (None, condition) and n in (None, network)) for c, n in self.levels]
        )


def _ordered(levels: list[str], reference: str, factor: str) -> list[str]:
    if reference not in levels:
        raise ValueError(
            f"reference {factor} {reference!r} is not among the {factor}s in the data "
            f"({', '.join(levels)}); choose another with --ref-{factor}"
        )
    return [reference] + [level for level in levels if level != reference]


def build_design(rows: pd.DataFrame, spec: ModelSpec, conditions: list[str], networks: list[str]) -> Design:
    """Treatment dummies for the main trials in ``rows`` (see ``exclusions.model_rows``)."""
    conditions = _ordered(list(conditions), spec.ref_condition, "condition")
    networks = _ordered(list(networks), spec.ref_network, "network")
    frame = pd.DataFrame(
        {
            "y": rows["correct"].astype(float).to_numpy(),
            "participant": rows["participant_id"].astype(str).to_numpy(),
            "unit": rows["unit"].astype(str).to_numpy(),
        }
    )
    terms, columns, levels = [INTERCEPT], [INTERCEPT], []
    blocks: dict[str, list[str]] = {"condition": [], "network": []}

    def add(term: str, block: str, condition: str | None, network: str | None) -> None:
        column = f"x{len(columns)}"
        values = np.ones(len(rows), dtype=bool)
        if condition is not None:
            values &= rows["condition"].eq(condition).to_numpy()
        if network is not None:
            values &= rows["network"].eq(network).to_numpy()
        frame[column] = values.astype(float)
        terms.append(term)
        columns.append(column)
        levels.append((condition, network))
        blocks.setdefault(block, []).append(column)

    for c in conditions[1:]:
        add(f"condition[{c}]", "condition", c, None)
    for n in networks[1:]:
        add(f"network[{n}]", "network", None, n)
    if spec.interaction:
        for c in conditions[1:]:
            for n in networks[1:]:
                add(f"condition[{c}]:network[{n}]", "condition:network", c, n)
    return Design(frame, spec, conditions, networks, terms, columns, blocks, levels)


# ---------------------------------------------------------------- engines


@dataclass
class EngineFit:
    """What an engine returns for one formula."""

    beta: np.ndarray
    loglik: float
    npar: int
    re_sd: dict[str, float]
    converged: bool
    singular: bool
    messages: list[str] = field(default_factory=list)
    vcov: np.ndarray | None = None
    vcov_method: str = ""


def _formula(columns: list[str]) -> str:
    fixed = " + ".join(["1"] + [c for c in columns if c != INTERCEPT])
    return f"y ~ {fixed} + (1|participant) + (1|unit)"


def _deriv12_hessian(fun, x: np.ndarray, delta: float = 1e-4) -> np.ndarray:
    """Central-difference Hessian, as lme4's ``deriv12`` computes it."""
    n = len(x)
    fx = fun(x)
    hessian = np.zeros((n, n))
    for i in range(n):
        up, down = x.copy(), x.copy()
        up[i] += delta
        down[i] -= delta
        hessian[i, i] = (fun(up) - 2 * fx + fun(down)) / delta**2
        for j in range(i):
            uu, ud, du, dd = up.copy(), up.copy(), down.copy(), down.copy()
            uu[j] += delta
            ud[j] -= delta
            du[j] += delta
            dd[j] -= delta
            hessian[i, j] = hessian[j, i] = (fun(uu) - fun(ud) - fun(du) + fun(dd)) / (4 * delta**2)
    return hessian


def _hessian_vcov(result) -> np.ndarray | None:
    """lme4's GLMM vcov: the beta block of 2 H^-1 over (theta, beta); None if not PD."""
    if not result.joint_fit:
        return None
    theta = np.asarray(result.theta, dtype=float)
    x = np.r_[theta, np.asarray(result.beta, dtype=float)]
    hessian = _deriv12_hessian(result.as_function("deviance"), x)
    try:
        inverse = np.linalg.inv(hessian)
    except np.linalg.LinAlgError:
        return None
    k = len(theta)
    vcov = inverse[k:, k:] + inverse[k:, k:].T  # 2 H^-1, symmetrised
    if not np.all(np.isfinite(vcov)) or np.linalg.eigvalsh(vcov).min() <= 0:
        return None
    return vcov


def fit_mixedlm(
    frame: pd.DataFrame, formulas: dict[str, list[str]], with_vcov: set[str]
) -> tuple[dict[str, EngineFit], dict[str, str]]:
    """Fit each formula (fixed columns of ``frame``); vcov for those in ``with_vcov``."""
    from importlib.metadata import version

    import mixedlm
    from mixedlm.families import Binomial

    fits = {}
    for name, columns in formulas.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = mixedlm.glmer(_formula(columns), frame, family=Binomial(), nAGQ=1)
            singular = bool(result.isSingular())
        messages = list(dict.fromkeys(str(w.message) for w in caught))
        if not result.converged and result.message:
            messages.append(result.message)
        groups = result.VarCorr().groups
        fit = EngineFit(
            beta=np.asarray(result.beta, dtype=float),
            loglik=float(result.logLik().value),
            npar=int(result.npar()),
            re_sd={g: float(groups[g].stddev["(Intercept)"]) for g in GROUPS},
            converged=bool(result.converged),
            singular=singular,
            messages=messages,
        )
        if name in with_vcov:
            fit.vcov = _hessian_vcov(result)
            fit.vcov_method = "Hessian of the Laplace deviance (as lme4)"
            if fit.vcov is None:
                fit.vcov = np.asarray(result.vcov(), dtype=float)
                fit.vcov_method = "fixed-effect information at the estimated theta (lme4's use.hessian=FALSE)"
                fit.messages.append(
                    "Hessian unavailable or not positive definite: standard errors from the RX approximation"
                )
        fits[name] = fit
    return fits, {"mixedlm": version("mixedlm")}


def r_script() -> Path:
    return Path(str(resources.files("analysis") / "glmer.R"))


def fit_lme4(
    frame: pd.DataFrame, formulas: dict[str, list[str]], with_vcov: set[str]
) -> tuple[dict[str, EngineFit], dict[str, str]]:
    """As :func:`fit_mixedlm`, by R's lme4 in one ``Rscript`` run."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        raise EngineError(
            "engine lme4 needs R: Rscript is not on PATH "
            "(Debian: apt-get install r-base-core r-cran-lme4)"
        )
    with tempfile.TemporaryDirectory(prefix="maco-glmer-") as tmp:
        data, spec, out = Path(tmp, "data.csv"), Path(tmp, "models.tsv"), Path(tmp, "fits.csv")
        frame.to_csv(data, index=False)
        spec.write_text(
            "".join(f"{name}\t{_formula(cols)}\t{int(name in with_vcov)}\n" for name, cols in formulas.items())
        )
        done = subprocess.run(
            [rscript, "--vanilla", str(r_script()), str(data), str(spec), str(out)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0 or not out.exists():
            raise EngineError(f"Rscript failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        long = pd.read_csv(out, dtype=str, keep_default_na=False)
    fits = {}
    for name, columns in formulas.items():
        part = long[long["model"] == name]

        def values(kind: str) -> pd.DataFrame:
            return part[part["kind"] == kind]

        fixef = values("fixef").set_index("name")["value"].astype(float)
        names = [INTERCEPT] + columns
        fit = EngineFit(
            beta=fixef.reindex(names).to_numpy(),
            loglik=float(values("loglik")["value"].iloc[0]),
            npar=int(float(values("npar")["value"].iloc[0])),
            re_sd=values("re_sd").set_index("name")["value"].astype(float).to_dict(),
            converged=values("converged")["value"].iloc[0] == "TRUE",
            singular=values("singular")["value"].iloc[0] == "TRUE",
            messages=[m for m in values("message")["value"] if m],
        )
        if name in with_vcov:
            v = values("vcov")
            matrix = v.pivot(index="name", columns="name2", values="value").astype(float)
            fit.vcov = matrix.reindex(index=names, columns=names).to_numpy()
            fit.vcov_method = "lme4's vcov() (Hessian-based for a GLMM)"
        fits[name] = fit
    return fits, long[long["kind"] == "version"].set_index("name")["value"].to_dict()


# ---------------------------------------------------------------- results


@dataclass
class FitResult:
    engine: str
    spec: ModelSpec
    design: Design
    beta: np.ndarray
    vcov: np.ndarray
    vcov_method: str
    re_sd: dict[str, float]
    loglik: float
    converged: bool
    singular: bool
    messages: list[str]
    lrt: pd.DataFrame
    fit_s: float
    engine_versions: dict[str, str]

    @property
    def terms(self) -> list[str]:
        return self.design.terms

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.diag(self.vcov))

    @property
    def n_obs(self) -> int:
        return len(self.design.frame)

    @property
    def n_groups(self) -> dict[str, int]:
        return {g: int(self.design.frame[g].nunique()) for g in GROUPS}

    def fixed_effects(self, level: float = 0.95) -> pd.DataFrame:
        """Estimate, SE, Wald interval, z and p per term, plus odds ratios."""
        return wald_table(self.terms, self.beta, self.se, level).rename(columns={"name": "term"})

    def vcov_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.vcov, index=self.terms, columns=self.terms)


def wald_table(names: list[str], estimate: np.ndarray, se: np.ndarray, level: float = 0.95) -> pd.DataFrame:
    q = stats.norm.ppf(0.5 + level / 2)
    z = estimate / se
    table = pd.DataFrame({"name": names, "estimate": estimate, "se": se, "z": z, "p": 2 * stats.norm.sf(np.abs(z))})
    table["ci_lower"] = estimate - q * se
    table["ci_upper"] = estimate + q * se
    table["odds_ratio"] = np.exp(estimate)
    table["or_lower"] = np.exp(table["ci_lower"])
    table["or_upper"] = np.exp(table["ci_upper"])
    return table


def fit_model(design: Design, engine: str = "mixedlm", lrt: bool = True) -> FitResult:
    """Fit the model of ``design``; with ``lrt``, also the reduced models of the LRTs.

    LRTs: condition and network each dropped from the additive model, and, when
    the design has it, the interaction dropped from the full model.
    """
    if engine not in ENGINES:
        raise EngineError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    additive = design.blocks["condition"] + design.blocks["network"]
    interaction = bool(design.blocks.get("condition:network"))
    formulas = {"full": design.columns[1:]}
    tests = []  # (term, bigger model, smaller model)
    if lrt:
        base = "additive" if interaction else "full"
        formulas[base] = additive
        for block in ("condition", "network"):
            formulas[f"no_{block}"] = [c for c in additive if c not in design.blocks[block]]
            tests.append((block, base, f"no_{block}"))
        if interaction:
            tests.append(("condition:network", "full", "additive"))
    fitter = fit_mixedlm if engine == "mixedlm" else fit_lme4
    start = time.perf_counter()
    fits, versions = fitter(design.frame, formulas, {"full"})
    elapsed = time.perf_counter() - start
    rows = []
    for term, big, small in tests:
        chisq = max(0.0, 2 * (fits[big].loglik - fits[small].loglik))
        df = fits[big].npar - fits[small].npar
        rows.append(
            {
                "term": term,
                "df": df,
                "chisq": chisq,
                "p": float(stats.chi2.sf(chisq, df)),
                "loglik_full": fits[big].loglik,
                "loglik_reduced": fits[small].loglik,
            }
        )
    main = fits["full"]
    messages = list(main.messages)
    for name, fit in fits.items():
        if name != "full" and not fit.converged:
            messages.append(f"reduced model {name} did not converge: " + "; ".join(fit.messages))
    return FitResult(
        engine=engine,
        spec=design.spec,
        design=design,
        beta=main.beta,
        vcov=main.vcov,
        vcov_method=main.vcov_method,
        re_sd=main.re_sd,
        loglik=main.loglik,
        converged=main.converged,
        singular=main.singular,
        messages=messages,
        lrt=pd.DataFrame(rows, columns=["term", "df", "chisq", "p", "loglik_full", "loglik_reduced"]),
        fit_s=elapsed,
        engine_versions=versions,
    )
