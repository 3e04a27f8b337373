"""The `maco-study` console script: it only dispatches to each package's cli.py.

Subcommands are imported lazily so that, e.g., `maco-study analyze` never
imports torch and `maco-study --help` stays fast.
"""
from __future__ import annotations

import importlib
import shutil
import tempfile
from pathlib import Path

import click

# name -> ("module:attribute" of a click command or group, its one-line help).
# The help is repeated here so that `maco-study --help` lists the commands
# without importing torch, Flask and statsmodels; a test keeps both in step.
SUBCOMMANDS = {
    "analyze": ("maco_study:analyze_export_or_database",
                "Analyse an export (CSV file or database URL) into a report folder."),
    "power": ("analysis.cli:power", "Estimate the power to detect MACO vs Olah by simulating whole studies."),
    "visualize": ("maco.cli:visualize", "Feature visualizations of output units or internal channels: one PNG "
                  "each (MACO adds transparency and masked PNGs) and run.json."),
    "concepts": ("applications.concepts_cli:concepts", "CRAFT concepts of one class, each visualized with MACO: "
                 "PNGs, concepts.json, run.json and concepts.png."),
    "gallery": ("applications.gallery:gallery", "One static HTML page of every visualize, concepts, invert and "
                "evaluate output and stimuli bundle under FOLDER."),
    "invert": ("applications.invert_cli:invert_command", "Feature inversion with MACO: per image the inversion, "
               "transparency and masked PNGs; inversion.png; run.json."),
    "spectrum": ("maco.cli:spectrum", "Mean magnitude spectrum (decorrelated colour, rfft2 layout) of a folder of "
                 "images."),
    "evaluate": ("maco.evaluation.cli:evaluate", "Score feature visualizations as in the MACO paper (Tables 1-3): "
                 "CSV, markdown tables, contact sheets."),
    "stimuli": ("stimuli.cli:stimuli", "Generate and check stimulus bundles (reference visualizations, query "
                "pairs)."),
    "serve": ("study_server.cli:serve", "Upgrade the database, import the bundle (idempotent) and serve the study "
              "with Granian."),
    "export": ("study_server.cli:export", "Write responses.csv (one row per answered trial), codebook.md and "
               "prolific_ids.csv."),
    "admin": ("study_server.cli:admin", "Administration of the study server."),
    "backup": ("study_server.cli:backup", "Copy the database while the server runs: SQLite online backup, or "
               "pg_dump's custom format."),
    "prolific": ("study_server.prolific.cli:prolific", "Create, watch and pay the study on Prolific: a draft "
                 "study, its status against the server's records, and the approvals."),
    "demo": ("demo.cli:demo", "The whole study on this machine: train three small networks on a synthetic task "
             "(cached), build a small bundle on them, serve it on 127.0.0.1, and with --simulate N run, export and "
             "analyse N synthetic participants."),
    "simulate": ("demo.cli:simulate", "Drive synthetic participants through a running study server over HTTP, "
                 "as browsers do."),
}


# The extra (pyproject.toml) each command needs beyond the base install, which is the server's:
# a server-only install asked for more says which extra to add.
COMMAND_EXTRAS = {
    **dict.fromkeys(("visualize", "concepts", "gallery", "invert", "spectrum", "evaluate", "stimuli"), "generator"),
    **dict.fromkeys(("analyze", "power", "simulate"), "analysis"),
    "demo": "all",
}


def missing_extra(command: str | None, exc: ModuleNotFoundError) -> click.ClickException | None:
    """One line naming the extra to install, when a command of an extra misses a module."""
    extra = COMMAND_EXTRAS.get(command or "")
    if extra is None:
        return None
    return click.ClickException(f"maco-study {command} needs {exc.name}, which this install does not have: "
                                f"pip install 'maco-study[{extra}]'")


def load_command(name: str) -> click.Command:
    module_name, attribute = SUBCOMMANDS[name][0].split(":")
    command = getattr(importlib.import_module(module_name), attribute)
    return command if isinstance(command, click.Command) else command()  # a factory composing packages


def export_for_analysis(db_url: str, out: Path) -> Path:
    """The study database's export, as `maco-study export` writes it, into OUT/export/: the
    responses, their codebook and the study's design (the Prolific ids stay out of a report folder)."""
    from study_server.cli import export

    target = out / "export"
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        click.get_current_context().invoke(export, db_url=db_url, out=str(Path(tmp) / "responses.csv"))
        for name in ("responses.csv", "codebook.md", "study.json"):  # study.json: one study only
            if (Path(tmp) / name).exists():
                shutil.move(Path(tmp) / name, target / name)
    return target / "responses.csv"


def analyze_export_or_database() -> click.Command:
    """`maco-study analyze`: the analysis reads exports only, so a study database URL (without
    --query) is first exported by the server's own export, here, where both packages may be used."""
    from analysis.cli import analyze

    def run(**options):  # noqa: ANN003, ANN202
        if "://" in options["responses"] and options.get("query") is None:
            options["responses"] = str(export_for_analysis(options["responses"], options["out"]))
        return analyze.callback(**options)

    return click.Command(analyze.name, params=analyze.params, callback=run, help=analyze.help,
                         short_help=analyze.short_help)


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in SUBCOMMANDS:
            return None
        try:
            return load_command(cmd_name)
        except ModuleNotFoundError as exc:
            raise missing_extra(cmd_name, exc) or exc from None

    def invoke(self, ctx: click.Context):  # noqa: ANN201 - what the subcommand returns
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as exc:  # a command that imports its libraries when it runs
            raise missing_extra(ctx.invoked_subcommand, exc) or exc from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, SUBCOMMANDS[name][1]) for name in self.list_commands(ctx)])


@click.group(cls=LazyGroup)
@click.version_option(package_name="maco-study")
def main() -> None:
    """maco-study: feature visualizations and the MACO psychophysics study."""


if __name__ == "__main__":
    main()
