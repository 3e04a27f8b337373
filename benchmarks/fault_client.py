"""The fault benchmark's clients: participants whose browsers behave as study.js does (every
request retried with back-off until the server answers; an answer kept until it is
acknowledged, also across a reload), with lost replies, reloads and second tabs on top."""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from http.client import HTTPConnection
from typing import Any
from urllib.parse import urlsplit

from study_client import SimulatedParticipant

from study_server.client import (ANSWER, STEP_PAGES, STUDY_PAGE, RequestsTransport, RetryRule, StudyClient,
                                 TransportError, step_request)
from study_server.client.retry import BACKOFF_FIRST_S


class BalancedTransport(RequestsTransport):
    """A load balancer in front of several server instances, as one participant's browser meets it:
    each request goes to the next live instance in turn (no stickiness, so any request of a
    session may land on any instance, the hardest case for the servers); an instance that refuses
    or drops a connection is taken out, as a balancer's health check does, and study.js's retry
    rule sends the request again, to a live one. `served` counts the requests per instance."""

    def __init__(self, base_urls: tuple[str, ...], cookies: Any = None):
        super().__init__(base_urls[0], cookies)
        self.instances = [url.rstrip("/") for url in base_urls]
        self.down: set[str] = set()
        self.served: Counter[str] = Counter()
        self._turn = 0

    def request(self, method: str, path: str, json: Any = None, follow_redirects: bool = False,
                timeout: float = 30) -> Any:
        live = [url for url in self.instances if url not in self.down] or self.instances
        self.base_url = live[self._turn % len(live)]
        self._turn += 1
        try:
            reply = super().request(method, path, json=json, follow_redirects=follow_redirects, timeout=timeout)
        except TransportError:
            self.down.add(self.base_url)
            raise
        self.served[self.base_url] += 1
        return reply


def make_transport(servers: str | tuple[str, ...], cookies: Any = None) -> RequestsTransport:
    """One server's transport, or a balancer's over several instances (a tuple of base URLs)."""
    return RequestsTransport(servers, cookies) if isinstance(servers, str) else BalancedTransport(servers, cookies)


@dataclass(frozen=True)
class ClientFaults:
    """How often a simulated participant's browser misbehaves."""

    lose_reply: float = 0.0  # per POST: the request reaches the server, its reply never comes back
    reload: float = 0.0  # per page or trial: the participant reloads (the Prolific link again, or /study)
    two_tabs: float = 0.0  # share of participants with a second tab that posts every answer too
    tab_conflict: float = 0.2  # of those answers: the second tab sends its own, different answer


class FaultyParticipant(SimulatedParticipant):
    """A participant whose browser behaves as study.js does, with `faults` on top.

    Follows the pages the server sends it to, so it finds its way back after a reload or a
    step taken already (its first try went through, the reply was lost). Keeps a ledger of
    every answer it sent and what the server said."""

    def __init__(self, base_url: str | tuple[str, ...], seed: int, think_s: float, faults: ClientFaults,
                 give_up_s: float, pid: str | None = None, pending: dict[str, Any] | None = None):
        retry = RetryRule(give_up_s=give_up_s)  # study.js's rule, until give_up_s
        super().__init__(make_transport(base_url), seed, think_s, retry, study_id="fault", pid=pid)
        self.faults = faults
        self.tab: StudyClient | None = None
        if self.rng.random() < faults.two_tabs:  # the same browser: one cookie jar, two pages
            self.tab = StudyClient(make_transport(base_url, cookies=self.client.transport.session.cookies),
                                   retry, on_response=self.record)
        self.ledger: dict[str, dict[str, Any]] = {}  # answer_id -> what was sent and what came back
        self.pending = pending  # study.js's localStorage: the answer not yet acknowledged
        self.events: Counter[str] = Counter()
        self.completed = False

    # -- transport with lost replies
    def lose_reply(self, path: str, body: dict[str, Any], client: StudyClient) -> Any:
        """Send `body`, then lose the reply: half the time the connection is dropped right after
        sending (the server may or may not process it), else the reply is read and discarded."""
        self.events["lost_replies"] += 1
        transport = client.transport
        if self.rng.random() < 0.5:
            parts = urlsplit(transport.base_url)
            cookies = "; ".join(f"{c.name}={c.value}" for c in transport.session.cookies)
            connection = HTTPConnection(parts.hostname, parts.port, timeout=5)
            try:
                connection.request("POST", path, body=json.dumps(body),
                                   headers={"Content-Type": "application/json", "Cookie": cookies})
            except OSError:
                pass
            finally:
                connection.close()
            return None
        try:
            return transport.request("POST", path, json=body)
        except TransportError:
            return None

    def post(self, path: str, body: dict[str, Any], client: StudyClient | None = None) -> Any:
        client = client or self.client
        if self.rng.random() < self.faults.lose_reply:
            self.lose_reply(path, body, client)
            time.sleep(BACKOFF_FIRST_S)  # study.js's first back-off before it sends again
        return self.attempt(client.request, "POST", path, body)

    def page(self, path: str, client: StudyClient | None = None) -> str | None:
        """Open a page as the browser does (following redirects): its data-page name."""
        return self.attempt((client or self.client).page, path)

    def reload(self) -> str | None:
        self.events["reloads"] += 1
        return self.page(self.start_path if self.rng.random() < 0.5 else STUDY_PAGE)

    # -- the session
    def run(self, ramp_s: float) -> None:
        time.sleep(self.rng.uniform(0, ramp_s))
        if self.tab is not None:  # both tabs open the Prolific link at once
            other = threading.Thread(target=self.page, args=(self.start_path, self.tab))
            other.start()
        page = self.page(self.start_path)
        if self.tab is not None:
            other.join()
        for _ in range(500):  # a bound, should a server send it in circles
            if page is None or page == "done":
                break
            if self.rng.random() < self.faults.reload:
                page = self.reload()
            elif page == "trials":
                page = self.trials()
            elif page in STEP_PAGES:
                page = self.step(*step_request(page))
            else:
                self.errors.append(f"the server showed an unexpected page {page!r}")
                return
        self.completed = page == "done"

    def step(self, path: str, body: dict[str, Any]) -> str | None:
        response = self.post(path, body)
        if response is None:
            return None
        if response.status_code == 200:
            return self.page(response.json()["next"])
        if response.status_code == 409:
            # "this step is not available now": the first try was stored and its reply lost (or the
            # other tab took the step); study.js then opens /study, the page of the current stage
            self.events["step_already_taken"] += 1
            return self.page(STUDY_PAGE)
        self.errors.append(f"POST {path}: HTTP {response.status_code} {response.text[:200]}")
        return None

    def trials(self) -> str | None:
        if self.pending is not None:  # what study.js does first on a trials page
            self.send_answer(self.pending)
        while True:
            if self.rng.random() < self.faults.reload:
                return self.reload()
            trial = self.show_trial()
            if trial is None:
                return self.page(STUDY_PAGE)
            reply = self.send_answer(self.answer_body(trial))
            if reply is None:
                return None
            if reply.get("next") == "page":
                return self.page(STUDY_PAGE)

    def send_answer(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Post an answer until the server acknowledges or refuses it; a second tab posts it too."""
        self.pending = body
        second = None
        if self.tab is not None:
            other = body
            if self.rng.random() < self.faults.tab_conflict:  # the other tab answers the same trial itself
                other = {**body, "answer_id": str(uuid.uuid4()), "chosen_side": self.rng.choice(["left", "right"])}
            second = threading.Thread(target=self.post_answer, args=(other, self.tab))
            second.start()
        response = self.post_answer(body)
        if second is not None:
            second.join()
        if response is None:
            return None  # gave up: the answer stays pending, as in localStorage
        self.pending = None  # acknowledged, or refused for good (study.js then shows the current trial)
        return response.json() if response.status_code == 200 else {"next": "trial"}

    def post_answer(self, body: dict[str, Any], tab: StudyClient | None = None) -> Any:
        entry = self.ledger.setdefault(body["answer_id"], {
            "answer_id": body["answer_id"], "pid": self.pid, "position": body["position"],
            "chosen_side": body["chosen_side"], "confidence": body["confidence"], "acked": False, "refused": 0})
        client = tab or self.client
        if self.rng.random() < self.faults.lose_reply:
            lost = self.lose_reply(ANSWER, body, client)
            entry["acked"] |= lost is not None and lost.status_code == 200  # the server did say so
            time.sleep(BACKOFF_FIRST_S)
            if tab is None and self.rng.random() < 0.3:
                self.reload()  # the participant reloads; study.js sends the kept answer again
        response = self.attempt(client.send_answer, body)
        if response is not None:
            if response.status_code == 200:
                entry["acked"] = True
            else:
                entry["refused"] = response.status_code
        return response

    def result(self) -> dict[str, Any]:
        retries = self.client.retries + (self.tab.retries if self.tab is not None else Counter())
        served = Counter(getattr(self.client.transport, "served", {}))
        if self.tab is not None:
            served.update(getattr(self.tab.transport, "served", {}))
        return {"pid": self.pid, "completed": self.completed, "answers": list(self.ledger.values()),
                "events": dict(self.events), "retries": dict(retries), "errors": self.errors,
                "requests": sum(len(v) for v in self.latencies.values()), "pending": self.pending,
                "served_by": dict(served)}


def run_participant(base_url: str | tuple[str, ...], seed: int, think_s: float, ramp_s: float, faults: ClientFaults,
                    give_up_s: float, pid: str | None = None, pending: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
    participant = FaultyParticipant(base_url, seed, think_s, faults, give_up_s, pid, pending)
    try:
        participant.run(ramp_s)
    except Exception as exc:  # noqa: BLE001 - reported, and the participant is resumed afterwards
        participant.errors.append(f"client crashed: {type(exc).__name__}: {exc}")
    return participant.result()


def run_client_process(base_url: str | tuple[str, ...], seeds: list[int], think_s: float, ramp_s: float, faults: ClientFaults,
                       give_up_s: float) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(max_workers=len(seeds)) as pool:
        return list(pool.map(lambda s: run_participant(base_url, s, think_s, ramp_s, faults, give_up_s), seeds))


def run_clients(base_url: str | tuple[str, ...], seeds: list[int], think_s: float, ramp_s: float, faults: ClientFaults,
                give_up_s: float, processes: int) -> list[dict[str, Any]]:
    """All participants at once, in `processes` client processes (0: threads of this one); `base_url`:
    one server, or a tuple of instances behind a balancer (BalancedTransport)."""
    if processes <= 0:
        return run_client_process(base_url, seeds, think_s, ramp_s, faults, give_up_s)
    chunks = [seeds[i::processes] for i in range(processes) if seeds[i::processes]]
    with ProcessPoolExecutor(max_workers=len(chunks)) as pool:
        return [r for chunk in pool.map(run_client_process, [base_url] * len(chunks), chunks,
                                        [think_s] * len(chunks), [ramp_s] * len(chunks),
                                        [faults] * len(chunks), [give_up_s] * len(chunks)) for r in chunk]
