"""The `maco-study` console script: it only dispatches to each package's cli.py.

Subcommands are imported lazily so that, e.g., `maco-study analyze` never
imports torch and `maco-study --help` stays fast.
"""
from __future__ import annotations

import importlib

import click

# name -> ("module:attribute" of a click command or group, its one-line help).
# The help is repeated here so that `maco-study --help` lists the commands
# without importing torch, Flask and statsmodels; a test keeps both in step.
SUBCOMMANDS = {
    "analyze": ("analysis.cli:analyze", "Analyse an export (CSV file or database URL) into a report folder."),
    "power": ("analysis.cli:power", "Estimate the power to detect MACO vs Olah by simulating whole studies."),
    "visualize": ("maco.cli:visualize", "Feature visualizations of output units: one PNG per unit (MACO adds "
                  "transparency and masked PNGs) and run.json."),
    "spectrum": ("maco.cli:spectrum", "Mean magnitude spectrum (decorrelated colour, rfft2 layout) of a folder of "
                 "images."),
    "stimuli": ("stimuli.cli:stimuli", "Generate and check stimulus bundles (reference visualizations, query "
                "pairs)."),
    "serve": ("study_server.cli:serve", "Upgrade the database, import the bundle (idempotent) and serve the study "
              "with gunicorn."),
    "export": ("study_server.cli:export", "Write responses.csv (one row per answered trial), codebook.md and "
               "prolific_ids.csv."),
    "admin": ("study_server.cli:admin", "Administration of the study server."),
    "backup": ("study_server.cli:backup", "Copy the database while the server runs: SQLite online backup, or "
               "pg_dump's custom format."),
    "demo": ("demo.cli:demo", "The whole study on this machine: build a small bundle (random-weight stand-in "
             "networks), serve it on 127.0.0.1, and with --simulate N run, export and analyse N synthetic "
             "participants."),
    "simulate": ("demo.cli:simulate", "Drive synthetic participants through a running study server over HTTP, "
                 "as browsers do."),
}


def load_command(name: str) -> click.Command:
    module_name, attribute = SUBCOMMANDS[name][0].split(":")
    return getattr(importlib.import_module(module_name), attribute)


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return load_command(cmd_name) if cmd_name in SUBCOMMANDS else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, SUBCOMMANDS[name][1]) for name in self.list_commands(ctx)])


@click.group(cls=LazyGroup)
@click.version_option(package_name="maco-study")
def main() -> None:
    """maco-study: feature visualizations and the MACO psychophysics study."""


if __name__ == "__main__":
    main()
