"""The short version of benchmarks/fault_server.py: a few participants against the server, one
worker killed with kill -9 in the middle, clients that lose replies, reload and answer from two
tabs; then every acknowledged answer is stored exactly once and everyone finishes. Plus the same
client faults against the app in-process, and the worker boot that waits for the database."""
from __future__ import annotations

import importlib
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def fault_server(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 - the benchmark module
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("fault_server")


def test_worker_kill_and_faulty_clients_lose_nothing(fault_server, db_url: str, bundle: Path,  # noqa: ANN001
                                                      tmp_path: Path) -> None:
    scenario = fault_server.Scenario(worker_kills=1, clients=fault_server.ClientFaults(
        lose_reply=0.3, reload=0.05, two_tabs=0.5, tab_conflict=0.3))
    try:
        result = fault_server.run_scenario(
            "test", scenario, bundle, db_url, participants=4, think_s=0.05, ramp_s=0.2, workers=2, threads=4,
            processes=0, give_up_s=60, restart_db=None, log_dir=tmp_path)
    except RuntimeError as exc:  # start_server: the server did not come up on this machine
        pytest.skip(f"the server could not start: {exc}")
    assert result["worker_kills"] == 1
    assert result["server_exits"] == [] and result["server_alive_at_end"]
    assert result["client_events"].get("lost_replies", 0) > 0
    assert result["lost"] == 0
    assert result["duplicated"] == 0
    assert result["stored_unacknowledged"] == 0
    assert result["acknowledged"] == result["stored"] > 0
    assert result["stuck"] == 0
    assert sum(result["conditions"].values()) == 4 and result["balanced"]
    assert fault_server.passed(result)


def test_lost_replies_and_two_tabs_store_each_answer_once(app, walker) -> None:  # noqa: ANN001
    """In-process: an answer sent again after a lost reply, and at once from a second tab sharing
    the cookie, is acknowledged each time and stored once; the other tab's own answer is refused."""
    alice = walker()
    alice.to_trials()
    trial = alice.current()
    tab, tab2 = app.test_client(), app.test_client()  # the same browser: the same cookie
    for client in (tab, tab2):
        client.set_cookie("session", alice.client.get_cookie("session").value)
    body = alice.answer_body(trial["position"], "left")
    replies = []

    def post(client) -> None:  # noqa: ANN001
        replies.append(client.post("/api/answer", json=body))

    tabs = [threading.Thread(target=post, args=(client,)) for client in (alice.client, tab, tab2)]
    for thread in tabs:
        thread.start()
    for thread in tabs:
        thread.join()
    assert [r.status_code for r in replies] == [200, 200, 200]
    assert len({r.get_data() for r in replies}) == 1  # the same reply, whichever pass stored it
    other = tab.post("/api/answer", json=alice.answer_body(trial["position"], "right"))
    assert other.status_code == 409
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from study_server.models import Participant, Trial

    with Session(app.extensions["maco"].engine) as session:
        stored = session.execute(select(Trial.answer_id, Trial.chosen_side).join(Participant).where(
            Participant.prolific_pid == alice.pid, Trial.answer_id.is_not(None))).all()
    assert [tuple(row) for row in stored] == [(body["answer_id"], "left")]


def test_worker_boot_waits_for_the_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that fails to load the app stops the whole server (Granian): while the database is
    unreachable the worker retries instead (fault_server's combined scenario does it for real)."""
    import time

    import study_server.app
    from study_server.cli import create_app_when_database_answers

    calls = []

    def create_app():  # noqa: ANN202
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("SELECT 1", {}, Exception("connection refused"))
        return "app"

    monkeypatch.setattr(study_server.app, "create_app", create_app)
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    assert create_app_when_database_answers() == "app"
    assert len(calls) == 3


def test_rate_limit_storage_starts_its_expiry_timer_once(app) -> None:  # noqa: ANN001
    """fault_server found a 500 under load: limits' memory storage could start one Timer from two
    request threads (both saw it stopped, both replaced it, both started the newest). Events force
    that interleaving every time, however the threads are scheduled: the second thread checks and
    replaces the timer while the first waits right after its own replacement, and the second starts
    the timer only once the first has started it."""
    from limits.storage import MemoryStorage

    from study_server.limits import LockedMemoryStorage

    def race(storage_class: type) -> list[BaseException]:
        own = vars(storage_class).get("timer")  # our class's property, or None for the library's
        first_replaced, second_replaced = threading.Event(), threading.Event()
        replaced = threading.local()
        armed = False  # not while the storage builds its first timer

        def current(storage):  # noqa: ANN001, ANN202
            return own.__get__(storage) if own else storage.__dict__["timer"]

        class Interleave:
            def __get__(self, storage, owner=None):  # noqa: ANN001, ANN204
                timer = current(storage)
                if armed and getattr(replaced, "second", False):
                    deadline = time.monotonic() + 60
                    while timer.ident is None and time.monotonic() < deadline:
                        time.sleep(0.001)  # until the first thread has started this timer
                return timer

            def __set__(self, storage, timer) -> None:  # noqa: ANN001
                if own:
                    own.__set__(storage, timer)
                else:
                    storage.__dict__["timer"] = timer
                if not armed:
                    return
                if threading.current_thread().name == "first":
                    first_replaced.set()
                    second_replaced.wait(60)
                else:
                    replaced.second = True
                    second_replaced.set()

        # sweep_interval_s 0: our class, too, replaces a finished timer at once (as the library does)
        storage = type("Interleaved", (storage_class,), {"timer": Interleave(), "sweep_interval_s": 0})()
        storage.timer.join()
        armed = True
        errors: list[BaseException] = []

        def hit() -> None:
            if threading.current_thread().name == "second":
                first_replaced.wait(60)
            try:
                storage.incr("key", 60)
            except RuntimeError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=hit, name=name) for name in ("first", "second")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert first_replaced.is_set() and second_replaced.is_set()  # the interleaving happened
        assert current(storage).ident is not None  # the expiry timer did start
        return errors

    # the library's own class fails under this interleaving, which shows the test forces it
    assert [str(e) for e in race(MemoryStorage)] == ["threads can only be started once"]
    assert race(LockedMemoryStorage) == []
    assert isinstance(app.extensions["rate_limits"].storage, LockedMemoryStorage)


def test_a_worker_killed_twice_in_a_row_is_started_again(bundle: Path, tmp_path: Path) -> None:
    """Granian's crash-loop guard stops the whole server when a worker it just started dies within
    5.5 s; a worker killed by a signal (kill -9, the out-of-memory killer) is started again however
    often (study_server.cli.run_granian), and the server keeps answering."""
    import os
    import signal

    from study_server.client import ServerProcess
    from study_server.client.launcher import answers

    def workers(pid: int) -> set[int]:
        return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}

    def started_in_place_of(pid: int, dead: int) -> int:
        deadline = time.monotonic() + 30
        while True:
            alive = workers(pid)
            if dead not in alive and len(alive) == 2 and (new := alive - before):
                return new.pop()
            assert server.process.poll() is None, "the server stopped"
            assert time.monotonic() < deadline, "no worker started in place of the killed one"
            time.sleep(0.02)

    with ServerProcess(bundle, f"sqlite:///{tmp_path / 'study.db'}", workers=2, threads=2, timeout_s=60,
                       env={"MACO_SECRET_KEY": "k" * 64}, log=tmp_path / "server.log") as server:
        pid = server.process.pid
        victim = min(workers(pid))
        for _ in range(3):  # the same worker slot, each time within a second or so of its start
            before = workers(pid)
            os.kill(victim, signal.SIGKILL)
            victim = started_in_place_of(pid, victim)
        time.sleep(1)
        assert server.process.poll() is None, "the server stopped"
        assert answers(server.url + "/")
