"""`maco-study stimuli build|check`."""
from __future__ import annotations

from pathlib import Path

import click

from maco.options import runtime_options

from .config import StimuliError, load_config


@click.group()
def stimuli() -> None:
    """Generate and check stimulus bundles (reference visualizations, query pairs)."""


@stimuli.command()
@click.argument("config_file", metavar="STUDY.TOML", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Bundle folder: created, or resumed when it holds a build of the same config.")
@click.option("--dry-run", is_flag=True, help="Print the plan (pieces, forward/backward passes) and stop.")
@click.option("--shard", metavar="I/N", help="Do only slice I of N (job arrays); default: torchrun's "
              "RANK/WORLD_SIZE, else everything.")
@click.option("--device", help="torch device; default: cuda (LOCAL_RANK) when present, else cpu.")
@runtime_options
@click.option("--no-progress", is_flag=True, help="No tqdm progress bars.")
@click.option("--stall-timeout", type=click.FloatRange(min=0), default=3600, show_default=True,
              help="Seconds a shard waits for the other shards to finish at least one more piece.")
def build(config_file: Path, out: Path | None, dry_run: bool, shard: str | None, device: str | None,
          dtype: str, deterministic: bool, no_progress: bool, stall_timeout: float) -> None:
    """Build the bundle described by STUDY.TOML into --out (resumable, shardable)."""
    from maco.device import DTYPES, use_deterministic

    from .build import Shard, build as run_build, describe_plan

    try:
        config = load_config(config_file)
        shard_spec = Shard.parse(shard)
        if dry_run:
            click.echo(describe_plan(config, shard_spec))
            return
        if out is None:
            raise click.UsageError("--out is required (except with --dry-run)")
        if deterministic:
            use_deterministic()
        manifest = run_build(config, out, shard_spec, device, progress=not no_progress,
                             stall_seconds=stall_timeout, compute_dtype=DTYPES[dtype])
    except StimuliError as exc:
        raise click.ClickException(str(exc)) from None
    if manifest is None:
        click.echo(f"shard {shard_spec.index}/{shard_spec.count} done; shard 0 writes the manifest")
        return
    from .manifest import load_manifest

    written = load_manifest(manifest.parent)
    unreadable = written.provenance["pool"]["unreadable"]
    click.echo(f"bundle written: {manifest} ({_summary(written)}; unreadable pool files skipped: "
               + ", ".join(f"{k} {v}" for k, v in unreadable.items()) + ")")


def _summary(manifest) -> str:
    return (f"{len(manifest.networks)} networks, {len(manifest.units)} units, "
            f"{len(manifest.query_pairs)} query pairs, {len(manifest.practice_trials)} practice, "
            f"{len(manifest.catch_trials)} catch trials, {len(manifest.images)} images; conditions: "
            + ", ".join(f"{c} ({_method_text(manifest.condition_method(c))})" for c in manifest.conditions))


def _method_text(method) -> str:  # noqa: ANN001 - manifest.ConditionMethod
    return ", ".join([method.method, *(f"{k} = {v}" for k, v in sorted(method.settings.items()))])


@stimuli.command()
@click.argument("bundle", type=click.Path(file_okay=False, path_type=Path))
def check(bundle: Path) -> None:
    """Verify a bundle: schema, files present, hashes, references for every unit and condition, and
    every trial as the instructions describe it (both options copies of the photo, a catch trial's
    wrong one another photo).

    Also warns about units whose references do not drive them (the quality gate)."""
    from .build import check_bundle
    from .manifest import ManifestError

    from .quality import warnings

    try:
        manifest = check_bundle(bundle)
    except ManifestError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"ok: {_summary(manifest)}")
    for line in warnings(manifest.provenance):
        click.echo(f"WARNING: {line}", err=True)
