"""`maco-study demo` and `maco-study simulate`."""
from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from .driver import PROFILES

PROFILE_HELP = "behaviour profile: " + "; ".join(f"{name}: {p.description}" for name, p in PROFILES.items())


@click.command()
@click.option("--dir", "folder", default="maco-demo", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="folder for everything the demo makes (bundle, database, export, report)")
@click.option("--simulate", "participants", default=0, show_default=True, type=click.IntRange(0, 10_000),
              help="then drive this many synthetic participants through the server, export and analyse")
@click.option("--exit", "exit_after", is_flag=True, help="stop after the report instead of serving on")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(0, 65535),
              help="port on 127.0.0.1 (0: any free port)")
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="a study.toml to use instead of the embedded demo study (copied to DIR/study.toml)")
@click.option("--random", "random_weights", is_flag=True,
              help="the random-weight study (timm test networks on scikit-image's photos): the fastest run, "
                   "its pictures mean nothing (tests)")
@click.option("--profile", default="strong", show_default=True, type=click.Choice(sorted(PROFILES)), help=PROFILE_HELP)
@click.option("--seed", default=0, show_default=True, type=int, help="seed of the simulated participants")
@click.option("--no-progress", is_flag=True, help="no progress bars")
def demo(folder: Path, participants: int, exit_after: bool, port: int, config: Path | None, random_weights: bool,
         profile: str, seed: int, no_progress: bool) -> None:
    """The whole study on this machine: train three small networks on a synthetic task (cached), build a
    small bundle on them, serve it on 127.0.0.1, and with --simulate N run, export and analyse N
    synthetic participants."""
    from study_server.client import free_port

    from .run import DemoError, run_demo

    if config is not None and random_weights:
        raise click.UsageError("give --config or --random, not both")
    host = "127.0.0.1"
    # a plain `kill` must stop the server subprocess too: exit through run_demo's clean-up
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        run_demo(folder, simulate=participants, exit_after=exit_after, host=host,
                 port=port or free_port(host), config=config, profile=profile, seed=seed,
                 progress=not no_progress, echo=click.echo, random=random_weights)
    except DemoError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.command()
@click.option("--url", required=True, help="the study server, e.g. http://127.0.0.1:5000")
@click.option("--bundle", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="the bundle the server serves: its manifest tells the driver which image is correct")
@click.option("--participants", default=10, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--profile", default="default", show_default=True, type=click.Choice(sorted(PROFILES)),
              help=PROFILE_HELP)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--time-scale", default=1.0, show_default=True, type=click.FloatRange(0),
              help="simulated waits x this (1: paced like people; 0.02: 50x faster, against a server whose "
                   "MACO_MIN_RT_MS, MACO_MIN_ANSWER_MS and MACO_MIN_SESSION_S are scaled the same way)")
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1, 1000),
              help="participants in the study at the same time")
@click.option("--out", default="simulation", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="folder for answers.csv (every acknowledged answer) and participants.csv")
def simulate(url: str, bundle: Path, participants: int, profile: str, seed: int, time_scale: float,
             concurrency: int, out: Path) -> None:
    """Drive synthetic participants through a running study server over HTTP, as browsers do.

    Use it against a staging deployment before a real study: the participants are real
    ones to the server (they are exported), with Prolific-format ids starting with 00000000
    (a real Prolific id starts with its creation time).
    """
    from stimuli.manifest import ManifestError
    from tqdm import tqdm

    from .driver import simulate as drive

    try:
        with tqdm(total=participants, desc="participants", unit="p") as bar:
            result = drive(url, bundle, participants, profile=profile, seed=seed, time_scale=time_scale,
                           concurrency=concurrency, progress=lambda _record: bar.update(1))
    except ManifestError as exc:
        raise click.ClickException(f"--bundle: {exc}") from None
    answers, people = result.write(out)
    click.echo(result.summary())
    click.echo(f"written: {answers}, {people}")
    failed = [p for p in result.participants if p.outcome == "failed"]
    if failed:
        raise click.ClickException(f"{len(failed)} participants failed, e.g. {failed[0].prolific_pid}: "
                                   f"{failed[0].error}")
