"""`maco-study simulate`: synthetic participants through a running study server, over real HTTP.

Each participant does what the browser does (study_server/static/study.js),
in the same order and with the same JSON bodies: ``/start`` with Prolific
parameters, consent, device check, the instructions page (which starts the
server's instruction clock), then ``GET /api/trial``, every image of the trial
(once per participant, as a browser caches them), ``POST /api/answer``, the
practice feedback, the optional comment and ``/api/complete``, and finally the
done page with the completion code.

How they answer comes from ``analysis.simulate`` (the one generative model of
the project): ``draw_participants`` (ability, inattention, one-sided pressing,
rushed instructions, dropouts, practice rounds), ``unit_effect`` and
``answer``. On top of it some participants reload the page once mid-session:
an answer's reply is lost, the page is reloaded (or the Prolific link
opened again) and the answer the browser kept in localStorage is sent again
with the same ``answer_id`` (the server must store it once).

Knowing which image is correct: the server never says so before the answer
is stored, and this is a test tool, not a participant. The driver is given
the bundle the server serves and recognises each image it downloads by its
pixels (the server may re-encode an image, never change a pixel): it looks
the trial's images up in the manifest, which gives the query pair, its unit
and network, which side holds the argmax image, and, from the reference grid,
the condition the server assigned.

Time: every wait (reading the consent form, the instructions, looking at a
trial, the feedback) is the simulated duration times ``time_scale``, and the
reported reaction times are the ones actually waited, so the server's clock
stays consistent. ``time_scale=1`` paces participants like people (a load
test of a staging server); the demo runs at 0.02 and scales the exclusion
rules' time limits by the same factor.

The protocol (paths, bodies, study.js's retry rule) is study_server.client's;
this module is the behaviour model. It never imports torch.
"""
from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from analysis.simulate import GenerativeModel, SimulatedParticipant, answer, draw_participants, unit_effect
from study_server.client import (STUDY_PAGE, ProtocolError, RequestsTransport, RetryRule, StudyClient, answer_body,
                                 start_path)

from .bundle_index import BundleIndex, DriverError
from .records import ParticipantRecord, SimulationResult


@dataclass(frozen=True)
class Profile:
    """A behaviour profile: the generative model plus what only a browser session has."""

    model: GenerativeModel
    p_reload: float = 0.1  # participants who reload once mid-session, losing one answer's reply
    p_comment: float = 0.3  # participants who leave a comment
    description: str = ""


PROFILES: dict[str, Profile] = {
    "default": Profile(GenerativeModel(), description="analysis.simulate's illustrative effects"),
    # Large effects for the end-to-end test and a demo whose report shows every effect clearly:
    # each coefficient is many standard errors from zero even with a few dozen participants.
    "strong": Profile(
        GenerativeModel(intercept=1.0,
                        condition_effects={"olah": 0.0, "maco_mask": 1.5, "maco": 1.8, "natural": 2.2, "none": -1.2},
                        network_effects={"resnet50": 0.0, "vgg16": 1.0, "vit_b16": -1.0},
                        participant_sd=0.3, unit_sd=0.2),
        p_reload=0.2, description="large effects (every sign is unmistakable)"),
}

WINDOW_SIZES = [(1280, 800), (1440, 900), (1536, 864), (1920, 1080)]
STUDY_ID = "SIMSTUDY"
# Prolific's id format (24 hex digits); a real one begins with its creation time (a MongoDB
# ObjectId), never with 1970's zeros: these are the prefix, the run's tag and the participant's number
SIMULATED_PID_PREFIX = "00000000"
RETRY = RetryRule(tries=6)  # study.js's rule, bounded: a participant that cannot get through fails
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) maco-study-simulate"


# ---------------------------------------------------------------------------
# one participant
def _wait(seconds: float) -> None:
    if seconds > 0:
        time.sleep(seconds)


class SimulatedSession:
    """One synthetic participant's visit, from the Prolific link to the completion page (or a dropout)."""

    def __init__(self, base_url: str, index: BundleIndex, model: GenerativeModel, profile: Profile,
                 person: SimulatedParticipant, number: int, pid: str, seed: int, time_scale: float):
        self.index, self.model, self.profile, self.person = index, model, profile, person
        self.seed, self.time_scale = seed, time_scale
        self.record = ParticipantRecord(pid, person)
        self.rng = np.random.default_rng([seed, number])  # its own stream: the same behaviour in any thread order
        self.client = StudyClient(RequestsTransport(base_url, user_agent=USER_AGENT), RETRY,
                                  window=WINDOW_SIZES[int(self.rng.integers(len(WINDOW_SIZES)))])
        self.image_ids: dict[str, str] = {}  # url -> the bundle's image id
        self.start_url = start_path(pid, STUDY_ID, secrets.token_hex(8))
        n_trials = model.practice_trials + len(model.networks) * model.main_trials_per_network + model.catch_trials
        # answers stored before the reload (the reply of the next one is lost)
        self.reload_at = int(self.rng.integers(0, n_trials)) if self.rng.random() < profile.p_reload else None
        self.practice_index = 0  # position within the current practice round

    def wait(self, simulated_s: float) -> None:
        _wait(simulated_s * self.time_scale)

    def expect_page(self, path: str, page: str, after: str) -> None:
        shown = self.client.page(path)
        if shown != page:
            raise DriverError(f"after {after} the server showed the {shown!r} page, not {page!r}")

    def step(self, reply: dict[str, Any], page: str, after: str) -> None:
        """A stage's POST was answered: the page the server sends the browser to must be `page`."""
        self.expect_page(reply["next"], page, after)

    def run(self) -> ParticipantRecord:
        client, rng = self.client, self.rng
        try:
            self.expect_page(self.start_url, "consent", "GET /start")
            self.wait(rng.lognormal(np.log(20), 0.4))  # reading the consent form
            self.step(client.consent(), "device", "the consent")
            self.wait(rng.lognormal(np.log(5), 0.4))
            # opening the instructions page starts the server's instruction clock
            self.step(client.device(), "instructions", "the device check")
            self.wait(self.person.instruction_ms / 1000)
            self.step(client.instructions(), "trials", "the instructions")
            while self.record.outcome == "started" and self.trial():
                pass
            if self.record.outcome == "dropped":
                return self.record
            self.wait(rng.lognormal(np.log(10), 0.5))
            comment = "Simulated participant: all fine." if rng.random() < self.profile.p_comment else ""
            self.step(client.complete(comment), "done", "the comment")
            self.record.outcome = "completed"
        except (DriverError, ProtocolError, KeyError, ValueError) as exc:
            self.record.outcome, self.record.error = "failed", f"{type(exc).__name__}: {exc}"
        return self.record

    def trial(self) -> bool:
        """Show, answer and store the current trial; False once the trials are over."""
        client, record = self.client, self.record
        data = client.trial()
        if data["done"]:
            self.expect_page(data["next"], "comment", "the last trial")
            return False
        if self.person.drops_after is not None and len(record.answers) >= self.person.drops_after:
            record.outcome = "dropped"  # closes the tab: nothing more is sent
            return False
        trial = data["trial"]
        for url, png in client.images(trial).items():
            self.image_ids[url] = self.index.image_id(png)
        ids = {name: self.image_ids[trial[name]] for name in ("base", "left", "right")}
        info = self.index.trial(ids["base"], ids["left"], ids["right"])
        if trial["practice"] != (info.kind == "practice"):
            raise DriverError(f"trial {trial['position']}: the server calls it "
                              f"{'practice' if trial['practice'] else 'not practice'}, the bundle {info.kind}")
        condition = self.index.condition([self.image_ids[url] for url in trial["references"]])
        if record.condition and condition != record.condition:
            raise DriverError(f"trial {trial['position']}: references of condition {condition}, "
                              f"earlier ones of {record.condition}")
        record.condition = condition
        self.person = replace(self.person, condition=condition)  # the server assigns the condition
        correct_side = "left" if ids["left"] == info.pair.correct_image else "right"
        unit_re = unit_effect(self.model, self.seed, info.network, info.pair.unit) if info.kind == "main" else 0.0
        choice = answer(self.model, self.person, info.kind, info.network, unit_re, correct_side, self.rng)
        if info.kind == "practice":  # as in simulate_export: each round but the planned last one has a mistake
            wrong = trial["practice_round"] < self.person.practice_rounds and self.practice_index == 0
            choice["chosen_side"] = {"left": "right", "right": "left"}[correct_side] if wrong else correct_side
        rt_ms = round(choice["rt_ms"] * self.time_scale, 1)
        _wait(rt_ms / 1000)
        body = answer_body(trial["position"], choice["chosen_side"], choice["confidence"], rt_ms, client.window)
        if self.reload_at == len(record.answers):
            # the reply is lost; the page is reloaded (or the Prolific link opened again) and
            # study.js sends the answer it kept in localStorage once more
            client.answer(body)
            record.reloads += 1
            self.expect_page(self.start_url if self.rng.random() < 0.5 else STUDY_PAGE, "trials", "a reload")
        reply = client.answer(body)
        if not reply.get("stored"):
            raise DriverError(f"trial {trial['position']}: answer not acknowledged ({reply})")
        record.answers.append({
            "prolific_pid": record.prolific_pid, "answer_id": body["answer_id"], "trial_index": trial["position"],
            "trial_kind": info.kind, "practice_round": trial["practice_round"] or "", "network": info.network,
            "unit": info.pair.unit, "query_id": info.pair.id, "correct_side": correct_side,
            "chosen_side": body["chosen_side"], "correct": int(body["chosen_side"] == correct_side),
            "confidence": body["confidence"], "rt_ms": rt_ms})
        feedback = reply.get("feedback")
        if feedback is not None:
            if feedback["correct_side"] != correct_side:
                raise DriverError(f"trial {trial['position']}: the feedback's correct side is not the bundle's")
            self.practice_index = 0 if feedback["round_result"] else self.practice_index + 1
            self.wait(2.5 if feedback["round_result"] else 1.2)  # the feedback on screen
        if reply["next"] == "page":
            self.expect_page(STUDY_PAGE, "comment", "the last trial")
            return False
        return True


def simulate(base_url: str, bundle_dir: str | Path, participants: int, profile: str | Profile = "default",
             seed: int = 0, time_scale: float = 1.0, concurrency: int = 8,
             progress: Callable[[ParticipantRecord], None] | None = None) -> SimulationResult:
    """Drive ``participants`` synthetic participants through the server at ``base_url``,
    ``concurrency`` at a time; ``progress`` is called as each one finishes."""
    if participants < 1:
        raise ValueError("participants: must be at least 1")
    if time_scale < 0:
        raise ValueError("time_scale: must be >= 0")
    profile = PROFILES[profile] if isinstance(profile, str) else profile
    index = BundleIndex.load(bundle_dir)
    model = index.model_for(profile.model)
    people = draw_participants(model, participants, np.random.default_rng(seed), prefix="sim")
    run_tag = secrets.token_hex(4)  # a second run against the same server brings new Prolific ids
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        sessions = [SimulatedSession(base_url, index, model, profile, person, k, f"{SIMULATED_PID_PREFIX}{run_tag}{k:08x}", seed,
                                     time_scale) for k, person in enumerate(people)]
        futures = [pool.submit(session.run) for session in sessions]
        records = []
        for future in as_completed(futures):
            records.append(future.result())
            if progress is not None:
                progress(records[-1])
    records.sort(key=lambda r: r.prolific_pid)
    return SimulationResult(records, time.perf_counter() - t0)
