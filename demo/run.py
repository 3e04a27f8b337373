"""`maco-study demo`: the whole study on this machine, from one command, in one folder.

Steps, each reusing the packages' own code:
0. the synthetic task, when the study uses it (the embedded ``study_demo.toml``
   does; ``--random`` writes ``study_demo_random.toml`` instead): three small
   networks trained on it into ``DIR/networks`` (demo/networks.py), the pool
   drawn from it into ``DIR/pool`` (demo/task.py) and MACO's magnitude
   spectrum measured on that pool into ``DIR/spectrum.npy``, all reused by the
   next run;
1. the bundle: ``stimuli.build`` on the embedded ``study_demo.toml`` (or the
   user's ``--config``) into ``DIR/bundle``. The build is resumable, so a
   second run only checks what is there (seconds) and a stopped build
   continues where it stopped;
2. a fresh SQLite database ``DIR/study.db`` (the demo's data are synthetic:
   every run starts empty), upgraded, the bundle imported, a one-time admin
   password set;
3. ``maco-study serve`` in a subprocess on 127.0.0.1 (Granian, its log in
   ``DIR/server.log``);
4. with ``--simulate N``: ``demo.driver`` sends N synthetic participants
   through it over HTTP (``DIR/simulation/``), then the export
   (``DIR/export/``) and the analysis (``DIR/report/``).

The simulated clock runs ``DEMO_TIME_SCALE`` times real time, and the
analysis scales the exclusion rules' time limits (instructions, total time)
by the same factor, so the same participants are excluded as at real speed.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from importlib.resources import files
from pathlib import Path
from typing import Callable

from study_protocol.study import REFERENCE_NETWORK, TRANSFORMER_NETWORK
from study_server.client import ServerProcess, ServerStartError, port_in_use

DEMO_CONFIG = "study_demo.toml"  # networks trained here on the synthetic task
RANDOM_DEMO_CONFIG = "study_demo_random.toml"  # random-weight networks, scikit-image's photos: the fastest
DEMO_TIME_SCALE = 0.02  # 50x faster than people: 40 s of instructions take 0.8 s
SERVER_START_TIMEOUT_S = 120
RANDOM_WEIGHTS_NOTICE = ("DEMO DATA: the networks of this study have random weights and the participants "
                         "are simulated; the numbers show the platform working, not anything about "
                         "feature visualizations.")
PLANTED_NOTE = "DEMO: planted by the simulator (profile {profile!r}), not measured"  # on every effect line
TRAINED_NOTICE = ("DEMO DATA: small networks trained here on a synthetic task ({networks}); the participants "
                  "are simulated, and every effect below was planted by the simulator (profile {profile!r}), "
                  "not measured: the numbers show the platform recovering it.")


class DemoError(Exception):
    """A demo step that failed; the message says which and where to look."""


@dataclass
class DemoPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "study.toml"

    @property
    def bundle(self) -> Path:
        return self.root / "bundle"

    @property
    def database(self) -> Path:
        return self.root / "study.db"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.database.resolve()}"

    @property
    def server_log(self) -> Path:
        return self.root / "server.log"

    @property
    def simulation(self) -> Path:
        return self.root / "simulation"

    @property
    def responses(self) -> Path:
        return self.root / "export" / "responses.csv"

    @property
    def report(self) -> Path:
        return self.root / "report"


def write_config(paths: DemoPaths, config: Path | None, random: bool = False) -> None:
    """DIR/study.toml: a copy of the user's --config, or of the embedded random-weight config with
    --random; else the one already there (edit it to change the demo); else the embedded demo config."""
    paths.root.mkdir(parents=True, exist_ok=True)
    if config is not None:
        paths.config.write_text(config.read_text(encoding="utf-8"), encoding="utf-8")
    elif random:
        paths.config.write_text(files("demo").joinpath(RANDOM_DEMO_CONFIG).read_text("utf-8"), encoding="utf-8")
    elif not paths.config.exists():
        paths.config.write_text(files("demo").joinpath(DEMO_CONFIG).read_text("utf-8"), encoding="utf-8")


def uses_task(config: Path) -> bool:
    """Whether the study reads the synthetic task's pool or networks (DIR/pool, DIR/networks/...)."""
    import tomllib

    from .networks import NETWORKS_DIR
    from .task import POOL_DIR

    try:
        data = tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False  # the build names the problem
    weights = [str(n.get("weights", "")) for n in data.get("networks", {}).values() if isinstance(n, dict)]
    return data.get("pool", {}).get("source") == POOL_DIR or any(w.startswith(f"{NETWORKS_DIR}/") for w in weights)


def prepare_task(paths: DemoPaths, echo: Callable[[str], None]) -> dict:
    """The task's networks (trained or cached), pool (drawn or reused) and MACO spectrum (measured
    on the pool); a retrained network or a new spectrum makes the bundle stale, so it is removed
    and built again."""
    import shutil

    from maco.spectra import save_spectrum, spectrum_from_folder

    from .networks import NETWORKS_DIR, TrainingError, prepare_networks
    from .task import POOL_DIR, POOL_PER_CLASS, POOL_SEED, SPECTRUM_FILE, SPECTRUM_SIZE, pool_is_current, write_pool

    pool = paths.root / POOL_DIR
    pool_drawn = not pool_is_current(pool, POOL_PER_CLASS)
    if pool_drawn:  # absent, or an older demo's smaller pool
        partial = paths.root / f".{POOL_DIR}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        write_pool(partial, POOL_PER_CLASS, POOL_SEED)
        shutil.rmtree(pool, ignore_errors=True)
        partial.replace(pool)
    spectrum = paths.root / SPECTRUM_FILE
    spectrum_measured = pool_drawn or not spectrum.is_file()
    if spectrum_measured:  # what `maco-study spectrum --images pool` writes: MACO's prescription for a new domain
        save_spectrum(spectrum_from_folder(pool, SPECTRUM_SIZE, progress=False), spectrum)
    try:
        networks = prepare_networks(paths.root / NETWORKS_DIR, echo)
    except TrainingError as exc:
        raise DemoError(str(exc)) from None
    if (spectrum_measured or not all(n.reused for n in networks.values())) and paths.bundle.exists():
        shutil.rmtree(paths.bundle)
    return networks


def build_bundle(paths: DemoPaths, progress: bool = True) -> None:
    from stimuli.build import build
    from stimuli.config import StimuliError, load_config

    try:
        build(load_config(paths.config), paths.bundle, progress=progress)
    except StimuliError as exc:
        raise DemoError(f"building the bundle: {exc} (the demo rebuilds {paths.bundle} from {paths.config} "
                        "once that folder is deleted)") from None


def fresh_database(paths: DemoPaths) -> str:
    """A new database with the bundle imported; returns the one-time admin password."""
    from study_server.admin import set_password
    from study_server.bundle import import_bundle
    from study_server.db import make_engine, make_sessionmaker, upgrade

    for suffix in ("", "-wal", "-shm"):
        Path(f"{paths.database}{suffix}").unlink(missing_ok=True)
    password = secrets.token_urlsafe(12)
    upgrade(paths.db_url)
    engine = make_engine(paths.db_url)
    with make_sessionmaker(engine)() as session:
        import_bundle(session, paths.bundle)
        set_password(session, password)
        session.commit()
    engine.dispose()
    return password


def start_server(paths: DemoPaths, host: str, port: int, time_scale: float = DEMO_TIME_SCALE) -> ServerProcess:
    """`maco-study serve` on host:port for the demo, its log in DIR/server.log; the pace floors
    (study_server/speed.py) run on the simulated clock, as the exclusion rules do (analyse)."""
    from study_server.config import DEFAULTS

    if port_in_use(host, port):
        raise DemoError(f"port {port} on {host} is already in use: choose another with --port")
    url = f"http://{host}:{port}"
    # a fresh signing key per run; no rate limits (study_server/limits.py): the simulated
    # participants all come from this machine and run 50x faster than people
    env = {"MACO_COMPLETION_CODE": "DEMO-CODE", "MACO_COMPLETION_URL": f"{url}/?completed={{code}}",
           "MACO_SECRET_KEY": secrets.token_hex(32), "MACO_RATE_LIMIT_ENABLED": "0",
           "MACO_PUBLIC_PREVIEW": "1",  # the demo's participant view link works without an admin login
           **{f"MACO_{key}": str(int(DEFAULTS[key] * time_scale)) for key in ("MIN_RT_MS", "MIN_ANSWER_MS",
                                                                               "MIN_SESSION_S")}}
    paths.server_log.unlink(missing_ok=True)  # this run's log only
    try:
        return ServerProcess(paths.bundle, paths.db_url, host=host, port=port, workers=1, threads=8, env=env,
                             log=paths.server_log, timeout_s=SERVER_START_TIMEOUT_S)
    except ServerStartError as exc:
        raise DemoError(f"the study server did not start: {exc}") from None


def export_responses(paths: DemoPaths, study: str) -> dict:
    from study_server.config import DEFAULTS
    from study_server.db import make_engine, make_sessionmaker
    from study_server.export import export

    engine = make_engine(paths.db_url)
    with make_sessionmaker(engine)() as session:
        summary = export(session, paths.responses, study, timedelta(minutes=DEFAULTS["PARTICIPANT_TIMEOUT_MIN"]))
    engine.dispose()
    return summary


def analyse(paths: DemoPaths, time_scale: float, notice: str,  # noqa: ANN201 - analysis.pipeline.Analysis
            effect_note: str | None = None):
    """The analysis of the export into DIR/report, with time limits on the simulated clock."""
    from analysis.exclusions import ExclusionRules
    from analysis.load import declared_analysis, load_design, load_export
    from analysis.models import ModelSpec
    from analysis.pipeline import run_analysis
    from analysis.report import file_sha256, write_report

    real = ExclusionRules()
    rules = ExclusionRules(min_instruction_s=real.min_instruction_s * time_scale,
                           min_total_s=real.min_total_s * time_scale,
                           max_total_s=real.max_total_s * time_scale, min_rt_ms=real.min_rt_ms * time_scale)
    df = load_export(paths.responses)
    # the study's declared conditions, reference and contrasts (the export's study.json)
    study_conditions, reference, contrasts = declared_analysis(load_design(paths.responses))
    conditions = sorted(set(df["condition"]))
    networks = sorted(set(df.loc[df["trial_kind"].eq("main"), "network"]))
    spec = ModelSpec(ref_condition=reference or ("olah" if "olah" in conditions else conditions[0]),
                     ref_network=REFERENCE_NETWORK if REFERENCE_NETWORK in networks else networks[0])
    analysis = run_analysis(df, spec=spec, rules=rules, vit=TRANSFORMER_NETWORK if TRANSFORMER_NETWORK in networks else networks[-1],
                            study_conditions=study_conditions, contrasts=contrasts)
    write_report(analysis, paths.report, source=str(paths.responses), source_sha256=file_sha256(paths.responses),
                 n_rows=len(df), notice=notice, effect_note=effect_note)
    return analysis


def run_demo(folder: Path, simulate: int = 0, exit_after: bool = False, host: str = "127.0.0.1",
             port: int = 5000, config: Path | None = None, profile: str = "strong", seed: int = 0,
             time_scale: float = DEMO_TIME_SCALE, concurrency: int = 8, progress: bool = True,
             echo: Callable[[str], None] = print, random: bool = False) -> dict:
    """Everything `maco-study demo` does; returns where things are and the main numbers."""
    from stimuli.manifest import load_manifest

    from .driver import simulate as drive

    paths = DemoPaths(Path(folder))
    write_config(paths, config, random)
    t0 = time.perf_counter()
    result: dict = {"folder": str(paths.root)}
    if uses_task(paths.config):
        from .networks import NETWORKS_DIR
        from .task import POOL_DIR, SPECTRUM_FILE

        echo(f"[0/4] the synthetic task: networks in {paths.root / NETWORKS_DIR}, pool in {paths.root / POOL_DIR}, "
             f"MACO's spectrum of the pool in {paths.root / SPECTRUM_FILE} (reused when already there)")
        prepare_task(paths, echo)
        result["task_s"] = round(time.perf_counter() - t0, 1)
    t1 = time.perf_counter()
    echo(f"[1/4] building the stimulus bundle into {paths.bundle} (reused when already built)")
    build_bundle(paths, progress)
    manifest = load_manifest(paths.bundle)
    build_s = time.perf_counter() - t1
    random_nets = [f"{n.key} ({n.timm_name})" for n in manifest.networks if n.weights == "random"]
    echo(f"      bundle ready in {build_s:.0f} s: {len(manifest.units)} units, {len(manifest.query_pairs)} "
         f"query pairs, {len(manifest.images)} images")
    for line in bundle_quality(manifest):
        echo("      " + line)
    if random_nets:
        echo(f"      RANDOM WEIGHTS (demo only): {', '.join(random_nets)}")
    echo(f"[2/4] a fresh database {paths.database}")
    password = fresh_database(paths)
    result["build_s"] = round(build_s, 1)
    server = start_server(paths, host, port, time_scale)
    try:
        echo(f"[3/4] the study server is running ({paths.server_log})\n"
             f"      participant view (preview, never exported): {server.url}/preview\n"
             f"      admin: {server.url}/admin   one-time password: {password}")
        result.update(url=server.url, admin_password=password)
        if simulate:
            echo(f"[4/4] {simulate} simulated participants (profile {profile!r}, clock x{1 / time_scale:g})")
            bar = _progress_bar(simulate, progress)
            outcome = drive(server.url, paths.bundle, simulate, profile=profile, seed=seed, time_scale=time_scale,
                            concurrency=concurrency, progress=lambda _record: bar.update(1))
            bar.close()
            outcome.write(paths.simulation)
            echo("      " + outcome.summary())
            failed = [p for p in outcome.participants if p.outcome == "failed"]
            if failed:
                raise DemoError(f"{len(failed)} simulated participants failed, e.g. {failed[0].error} "
                                f"(details: {paths.simulation / 'participants.csv'}, {paths.server_log})")
            summary = export_responses(paths, manifest.study)
            echo(f"      export: {summary['rows']} answered trials -> {paths.responses}")
            trained = manifest.provenance.get("network_training", {})
            notice = RANDOM_WEIGHTS_NOTICE if random_nets else TRAINED_NOTICE.format(
                networks=", ".join(f"{key}: {meta.get('held_out_accuracy', '?')} held-out accuracy"
                                   for key, meta in trained.items()), profile=profile) if trained else (
                "DEMO DATA: the participants are simulated (demo.driver, profile "
                f"{profile!r}); time limits of the exclusions are on the simulated clock.")
            analysis = analyse(paths, time_scale, notice, effect_note=PLANTED_NOTE.format(profile=profile))
            echo(analysis.contrasts[["contrast", "estimate", "se", "p_holm"]].to_string(index=False))
            echo(f"      report: {paths.report / 'report.html'}")
            result.update(simulation=outcome, export=summary, analysis=analysis, report=str(paths.report))
        if exit_after:
            return result
        echo(f"Serving at {server.url} (Ctrl-C to stop).")
        try:
            server.wait()
        except KeyboardInterrupt:
            echo("stopping")
        return result
    finally:
        server.stop()


def bundle_quality(manifest) -> list[str]:  # noqa: ANN001 - stimuli.manifest.Manifest
    """What the build's quality gate and query pairs say: can a person do this task?"""
    from stimuli.quality import warnings

    gate = manifest.provenance.get("quality", [])
    passed = sum(row["passed"] for row in gate)
    differences = sorted(p.activation_max - p.activation_min for p in manifest.query_pairs)
    lines = [f"quality gate: {passed} of {len(gate)} (unit, condition) reference sets drive their unit"]
    if differences:
        lines.append(f"query pairs: activation max - min from {differences[0]:.2f} to {differences[-1]:.2f} "
                     f"(median {differences[len(differences) // 2]:.2f} logits)")
    return lines + [f"WARNING: {line}" for line in warnings(manifest.provenance)]


def _progress_bar(total: int, enabled: bool):  # noqa: ANN202 - tqdm
    from tqdm import tqdm

    return tqdm(total=total, desc="participants", unit="p", disable=not enabled)

