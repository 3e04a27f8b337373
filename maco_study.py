"""The `maco-study` console script: it only dispatches to each package's cli.py.

Subcommands are imported lazily so that, e.g., `maco-study analyze` never
imports torch and `maco-study --help` stays fast.
"""
from __future__ import annotations

import importlib

import click

# name -> "module:attribute" of a click command or group
SUBCOMMANDS = {
    "analyze": "analysis.cli:analyze",
    "power": "analysis.cli:power",
    "visualize": "maco.cli:visualize",
    "spectrum": "maco.cli:spectrum",
    "stimuli": "stimuli.cli:stimuli",
    "serve": "study_server.cli:serve",
    "export": "study_server.cli:export",
    "admin": "study_server.cli:admin",
    "backup": "study_server.cli:backup",
    "demo": "demo.cli:demo",
    "simulate": "demo.cli:simulate",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)


@click.group(cls=LazyGroup)
@click.version_option(package_name="maco-study")
def main() -> None:
    """maco-study: feature visualizations and the MACO psychophysics study."""


if __name__ == "__main__":
    main()
