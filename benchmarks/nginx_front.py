"""nginx in front of `maco-study serve`, as in production: the configuration is docs/deploy/nginx.conf
itself (parsed with crossplane), with only what a test machine must change: one upstream (the local
server), a plain-HTTP listen on 127.0.0.1, no certificates, and this run's folders for the
reference cache and the sent images. So /ref/ comes from nginx's cache, the trial images through
X-Accel-Redirect from SENT_IMAGES_DIR, and the rest is proxied to the app.

`check_front` then asks nginx, as a participant's browser would, for what must stay hidden.
"""
from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import crossplane

from study_server.client import LightTransport, StudyClient, start_path
from study_server.client.launcher import answers, free_port
from study_server.images import SENT_IMAGES_LOCATION

PRODUCTION_CONFIG = Path(__file__).resolve().parents[1] / "docs" / "deploy" / "nginx.conf"
# the environment of every instance behind it (docs/deploy/nginx.conf's comments)
APP_ENV = {"MACO_SEND_IMAGES": "x-accel-redirect", "MACO_PROXIES": "1"}
START_TIMEOUT_S = 30


def _directive(name: str, *args: str, block: list[dict] | None = None) -> dict[str, Any]:
    return {"directive": name, "args": list(args), **({"block": block} if block is not None else {})}


def _local_server(server: list[dict], listen_port: int, sent_dir: Path) -> list[dict]:
    block = []
    for d in server:
        if d["directive"].startswith("ssl_"):
            continue
        if d["directive"] == "listen":
            d = _directive("listen", f"127.0.0.1:{listen_port}")
        elif d["directive"] == "location" and d["args"] == [SENT_IMAGES_LOCATION]:
            d = dict(d, block=[_directive("alias", f"{sent_dir}/") if x["directive"] == "alias" else x
                               for x in d["block"]])
        block.append(d)
    return block


def local_config(app_port: int, listen_port: int, folder: Path, sent_dir: Path) -> str:
    """docs/deploy/nginx.conf, made to run here, inside a whole nginx.conf of this run's folder."""
    parsed = crossplane.parse(str(PRODUCTION_CONFIG), check_ctx=False, catch_errors=False)
    http = []
    for d in parsed["config"][0]["parsed"]:
        if d["directive"] == "proxy_cache_path":
            d = dict(d, args=[str(folder / "ref-cache"), *d["args"][1:]])
        elif d["directive"] == "upstream":
            others = [x for x in d["block"] if x["directive"] != "server"]
            d = dict(d, block=[_directive("server", f"127.0.0.1:{app_port}"), *others])
        elif d["directive"] == "server":
            if not any(x["directive"] == "ssl_certificate" for x in d["block"]):
                continue  # the port-80 redirect to HTTPS
            d = dict(d, block=_local_server(d["block"], listen_port, sent_dir))
        http.append(d)
    temp = [_directive(f"{kind}_temp_path", str(folder / kind))
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")]
    return crossplane.build([
        _directive("worker_processes", "auto"),
        _directive("pid", str(folder / "nginx.pid")),
        _directive("error_log", str(folder / "error.log"), "warn"),
        _directive("events", block=[_directive("worker_connections", "4096")]),
        _directive("http", block=[
            _directive("include", "/etc/nginx/mime.types"), _directive("default_type", "application/octet-stream"),
            _directive("sendfile", "on"), _directive("tcp_nopush", "on"),
            _directive("access_log", str(folder / "access.log")), *temp, *http]),
    ])


class NginxFront:
    """nginx (master and workers, children of this process) in front of the app at app_url."""

    def __init__(self, app_url: str, folder: Path, sent_dir: Path):
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)  # nginx's workers (user nobody when started as root) keep the cache here
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.folder = folder
        config = folder / "nginx.conf"
        config.write_text(local_config(int(app_url.rsplit(":", 1)[1]), port, folder, sent_dir))
        self.process = subprocess.Popen([nginx, "-p", str(folder), "-c", str(config), "-g", "daemon off;"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answers(self.url + "/"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not start: {self.process.stderr.read().decode(errors='replace')}"
                                   f"{(folder / 'error.log').read_text() if (folder / 'error.log').exists() else ''}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop nginx and reap it (its workers' CPU then counts in this process's RUSAGE_CHILDREN)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: the workers finish and exit
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def check_front(base_url: str, sent_dir: Path) -> list[str]:
    """One participant's first trial through nginx: its images arrive, the queries of one size, and
    no reply shows the sent file's header; the internal location is closed to browsers."""
    problems = []
    http = LightTransport(base_url)
    client = StudyClient(http)
    client.start(start_path("f" * 24, "frontcheck", "frontcheck"))
    client.consent()
    client.device()
    client.instructions()
    trial = client.trial()["trial"]
    sizes = {}
    for key in ("base", "left", "right"):
        reply = http.request("GET", trial[key])
        leaked = [h for h in ("X-Accel-Redirect", "X-Sendfile") if reply.headers.get(h)]
        if reply.status_code != 200 or not reply.content.startswith(b"\x89PNG") or leaked:
            problems.append(f"front: {key} image status {reply.status_code}, header(s) {leaked} reached the browser")
        if not reply.headers.get("Cache-Control", "").startswith("private"):
            problems.append(f"front: {key} image Cache-Control {reply.headers.get('Cache-Control')!r}, not private")
        sizes[key] = len(reply.content)
    for url in trial["references"][:1]:  # the second fetch of a reference comes from nginx's cache
        statuses = [http.request("GET", url).headers.get("X-Cache-Status") for _ in range(2)]
        if statuses[1] != "HIT":
            problems.append(f"front: a reference fetched twice was {statuses} in nginx's cache, not then HIT")
    if sizes["left"] != sizes["right"]:
        problems.append(f"front: query sizes differ ({sizes['left']} and {sizes['right']})")
    sent = sorted(sent_dir.glob("*.png"))
    if not sent:
        problems.append("front: no image was sent through X-Accel-Redirect")
    elif (status := http.request("GET", SENT_IMAGES_LOCATION + sent[0].name).status_code) != 404:
        problems.append(f"front: the internal location answered a browser with {status}")
    return problems
