"""Command-line options shared by every command that runs a network (visualize, stimuli build).

Torch-free at import, so that ``--help`` stays fast; ``maco.device`` maps the
names to torch dtypes and applies the determinism switch.
"""
from __future__ import annotations

from collections.abc import Callable

import click

DTYPE_NAMES = ("float32", "bfloat16")


def runtime_options(command: Callable) -> Callable:
    """Add ``--dtype`` and ``--deterministic`` (passed as ``dtype`` and ``deterministic``)."""
    command = click.option(
        "--deterministic", is_flag=True,
        help="deterministic algorithms where torch has them (what that reproduces, and its cost: docs/gpu.md)",
    )(command)
    return click.option(
        "--dtype", type=click.Choice(DTYPE_NAMES), default=DTYPE_NAMES[0], show_default=True,
        help="network precision: bfloat16 runs the forward under autocast (objective, FFT, optimiser in float32)",
    )(command)
