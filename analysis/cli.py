"""``maco-study analyze`` and ``maco-study power``."""
from __future__ import annotations

from study_protocol.study import CONDITIONS, REFERENCE_NETWORK, TRANSFORMER_NETWORK

from pathlib import Path

import click

from analysis.contrasts import CATALOGUE, PAPER_SET
from analysis.exclusions import ExclusionRules
from analysis.intervals import BOOTSTRAP_SAMPLES, CI_METHODS
from analysis.models import ENGINES, PRIORS, ModelSpec
from analysis.pipeline import MIN_PARTICIPANTS_PER_CONDITION

DEFAULT_RULES = ExclusionRules()


def _levels(text: str | None) -> list[str] | None:
    return [level.strip() for level in text.split(",") if level.strip()] if text else None


@click.command()
@click.argument("responses")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Report folder (created).")
@click.option("--engine", type=click.Choice(ENGINES), default="mixedlm", show_default=True,
              help="mixedlm (Python, Rust core) or lme4 (R, needs Rscript).")
@click.option("--query", default=None, help="SQL selecting the export rows when RESPONSES is a database URL.")
@click.option("--ref-condition", default=None,
              help="Reference condition (default: the study config's [analysis] reference_condition, carried "
              "in the export's study.json, else its first condition; olah for an export without study.json).")
@click.option("--design", "design_path", default=None, type=click.Path(dir_okay=False),
              help="The study's design file (default: study.json beside RESPONSES, written by the export).")
@click.option("--ref-network", default=REFERENCE_NETWORK, show_default=True)
@click.option("--interaction/--no-interaction", default=False, show_default=True,
              help="Add condition:network to the model.")
@click.option("--random-slopes/--no-random-slopes", default=False, show_default=True,
              help="Fit (1 + condition|unit), the maximal random part for condition (Barr et al. 2013).")
@click.option("--slope-correlations/--no-slope-correlations", default=True, show_default=True,
              help="With --random-slopes: --no-slope-correlations fits (1 + condition||unit), the first "
              "simplification of a singular maximal model.")
@click.option("--participant-slopes/--no-participant-slopes", default=False, show_default=True,
              help="Fit (1 + network|participant): each participant's own differences between networks.")
@click.option("--prior", type=click.Choice(PRIORS), default="none", show_default=True,
              help="normal: weakly informative normal prior on the fixed effects (blme's bglmer), "
              "the remedy for separation.")
@click.option("--conditions", default=None, help="Comma-separated conditions that must all have data "
              f"(default: those in the export, each one of the study's: study.json's, else {', '.join(CONDITIONS)}).")
@click.option("--networks", default=None, help="Comma-separated networks that must all have data "
              "(default: those in the export).")
@click.option("--vit", default=TRANSFORMER_NETWORK, show_default=True, help="The network compared with each CNN (vit_vs_cnns).")
@click.option("--contrast", "contrasts", multiple=True, metavar="[FAMILY =] NAME | FACTOR: LEVEL vs VERSUS",
              help=f"A contrast to test (repeatable): a name ({', '.join(CATALOGUE)}) or e.g. "
                   "'condition: MACO vs Olah'; contrasts with one FAMILY share a Holm correction (default: "
                   f"condition and network contrasts apart). Default: the study's declared contrasts (study.json), else "
                   f"the paper's named contrasts its conditions support and each other condition vs the reference: "
                   f"{', '.join(PAPER_SET)} for the paper's four.")
@click.option("--ci", type=click.Choice(CI_METHODS), default="wald", show_default=True,
              help="Intervals of the contrasts: wald, profile (likelihood profile) or bootstrap (parametric); "
              "the last two need the additive model with random intercepts and the mixedlm engine.")
@click.option("--bootstrap-samples", type=click.IntRange(min=20), default=BOOTSTRAP_SAMPLES, show_default=True,
              help="Refits of simulated studies for --ci bootstrap.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --ci bootstrap's simulations.")
@click.option("--jobs", type=click.IntRange(min=1), default=2, show_default=True,
              help="Processes refitting in parallel for --ci bootstrap.")
@click.option("--allow-unconverged", is_flag=True,
              help="Exit 0 even when the fit did not converge or has problems (separation, a failed LRT).")
@click.option("--min-participants", type=int, default=MIN_PARTICIPANTS_PER_CONDITION, show_default=True,
              help="Warn when a condition has fewer included participants.")
@click.option("--min-rt-ms", type=float, default=DEFAULT_RULES.min_rt_ms, show_default=True,
              help="Drop main trials answered faster (client rt_ms or server_elapsed_ms); 0 keeps all.")
@click.option("--min-catch-accuracy", type=float, default=DEFAULT_RULES.min_catch_accuracy, show_default=True)
@click.option("--min-instruction-s", type=float, default=DEFAULT_RULES.min_instruction_s, show_default=True)
@click.option("--min-total-s", type=float, default=DEFAULT_RULES.min_total_s, show_default=True)
@click.option("--max-total-s", type=float, default=DEFAULT_RULES.max_total_s, show_default=True)
@click.option("--practice-check/--no-practice-check", default=DEFAULT_RULES.exclude_practice_flagged,
              show_default=True, help="Exclude participants still wrong in the last practice round (practice_flagged).")
@click.option("--side-check/--no-side-check", default=True, show_default=True,
              help="Exclude participants who answered on one side only.")
@click.option("--min-window-width", type=int, default=DEFAULT_RULES.min_window_width, show_default=True,
              help="Exclude participants with an answer given in a narrower browser window (CSS px).")
@click.option("--min-window-height", type=int, default=DEFAULT_RULES.min_window_height, show_default=True,
              help="Exclude participants with an answer given in a lower browser window (CSS px).")
def analyze(responses, out, engine, query, ref_condition, design_path, ref_network, interaction, random_slopes,
            slope_correlations, participant_slopes, prior, conditions, networks, vit, contrasts, ci, bootstrap_samples, seed, jobs,
            allow_unconverged, min_participants,
            min_rt_ms, min_catch_accuracy, min_instruction_s, min_total_s, max_total_s, practice_check, side_check,
            min_window_width, min_window_height):
    """Analyse an export (CSV file or database URL) into a report folder.

    Writes fixed_effects.csv, contrasts.csv, descriptives.csv, exclusions.csv,
    the figures (PNG and SVG) and report.md / report.html into OUT. Exits
    non-zero, after writing the report, when the fit did not converge or has problems.
    """
    from analysis.load import ExportError, declared_analysis, load_design, load_export
    from analysis.models import EngineError
    from analysis.pipeline import run_analysis
    from analysis.report import file_sha256, trusted, verdict, write_report

    rules = ExclusionRules(min_catch_accuracy=min_catch_accuracy, min_instruction_s=min_instruction_s,
                           min_total_s=min_total_s, max_total_s=max_total_s, require_both_sides=side_check,
                           exclude_practice_flagged=practice_check, min_rt_ms=min_rt_ms,
                           min_window_width=min_window_width, min_window_height=min_window_height)
    try:
        study_conditions, declared_reference, declared_contrasts = declared_analysis(load_design(responses, design_path))
        ref_condition = ref_condition or declared_reference or ModelSpec.ref_condition
        contrasts = list(contrasts) or declared_contrasts
        spec = ModelSpec(ref_condition, ref_network, interaction, random_slopes=random_slopes,
                         slope_correlations=slope_correlations, prior=prior, participant_slopes=participant_slopes)
        df = load_export(responses, query=query)
        analysis = run_analysis(df, spec=spec, engine=engine, rules=rules, conditions=_levels(conditions),
                                networks=_levels(networks), vit=vit, contrasts=contrasts,
                                study_conditions=study_conditions,
                                min_participants=min_participants, ci=ci, bootstrap_samples=bootstrap_samples,
                                seed=seed, jobs=jobs)
    except (ExportError, EngineError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    for warning in analysis.warnings:
        click.echo(f"warning: {warning}", err=True)
    digest = file_sha256(Path(responses)) if Path(responses).is_file() else None
    write_report(analysis, out, source=responses, source_sha256=digest, n_rows=len(df))
    fit = analysis.fit
    click.echo(f"{fit.engine}: {fit.n_obs} trials, {fit.n_groups['participant']} participants, "
               f"converged: {'yes' if fit.converged else 'NO'}")
    for row in analysis.contrasts.itertuples(index=False):
        click.echo(verdict(row))
    click.echo(f"report: {out / 'report.html'}")
    if not trusted(fit) and not allow_unconverged:
        kinds = ", ".join(dict.fromkeys(w.kind for w in fit.problems)) or "no convergence"
        raise click.ClickException(
            f"the fit has problems ({kinds}), so the contrasts and p-values they touch cannot be trusted (see the "
            f"box at the top of {out / 'report.md'}); rerun with --allow-unconverged to accept it"
        )


@click.command()
@click.option("--participants", default="40:240:40", show_default=True,
              help="Participant counts (all conditions, before exclusions): START:STOP:STEP or a,b,c.")
@click.option("--reps", type=int, default=100, show_default=True, help="Simulated studies per count.")
@click.option("--effect", type=float, default=None,
              help="True MACO vs Olah difference in log-odds (default: the simulator's).")
@click.option("--participant-sd", type=float, default=None, help="Random-intercept SD of participants.")
@click.option("--unit-sd", type=float, default=None, help="Random-intercept SD of units.")
@click.option("--trials-per-network", type=int, default=None, help="Main trials per network and participant.")
@click.option("--p-inattentive", type=click.FloatRange(0, 1), default=None,
              help="Share of participants answering at chance (they fail the catch trials; default: the simulator's).")
@click.option("--p-dropout", type=click.FloatRange(0, 1), default=None,
              help="Share of participants leaving before the end (excluded; default: the simulator's).")
@click.option("--alpha", type=float, default=0.05, show_default=True)
@click.option("--engine", type=click.Choice(ENGINES), default="mixedlm", show_default=True)
@click.option("--jobs", type=click.IntRange(min=1), default=2, show_default=True,
              help="Processes fitting in parallel (this machine's two cores by default).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("power"),
              show_default=True, help="Folder for power.csv and the power curve.")
def power(participants, reps, effect, participant_sd, unit_sd, trials_per_network, p_inattentive, p_dropout, alpha,
          engine, jobs, seed, out):
    """Estimate the power to detect MACO vs Olah by simulating whole studies."""
    from dataclasses import replace

    from analysis.figures import plot_power
    from analysis.power import parse_range, power_curve
    from analysis.simulate import GenerativeModel

    try:
        counts = parse_range(participants)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--participants") from error
    model = GenerativeModel()
    if effect is not None:
        model = model.with_effect("maco", model.condition_effects["olah"] + effect)
    changes = {"participant_sd": participant_sd, "unit_sd": unit_sd, "main_trials_per_network": trials_per_network,
               "p_inattentive": p_inattentive, "p_dropout": p_dropout}
    model = replace(model, **{k: v for k, v in changes.items() if v is not None})
    with click.progressbar(length=len(counts) * reps, label="simulated studies") as bar:
        table = power_curve(model, counts, reps=reps, alpha=alpha, seed=seed, engine=engine, jobs=jobs,
                            progress=bar.update)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "power.csv", index=False)
    plot_power(table, out / "power")
    click.echo(table[["participants", "studies", "failed_fits", "untrusted_fits", "power", "ci_lower", "ci_upper"]]
               .to_string(index=False))
    for error in table.loc[table["failed_fits"] > 0, "first_error"]:
        click.echo(f"a fit failed: {error}", err=True)
    click.echo(f"written: {out / 'power.csv'}, {out / 'power.png'}, {out / 'power.svg'}")
