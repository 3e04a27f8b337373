"""A local stand-in of Prolific's REST API: the endpoints `maco-study prolific` uses, for tests.

It follows Prolific's API v1 reference (docs.prolific.com, as read in 2026-12; docs/prolific.md):
token authentication, POST /api/v1/studies/ (draft), POST .../studies/{id}/transition/, GET
.../studies/{id}/, GET /api/v1/submissions/?study= (paginated by page and page_size, with
`_links.next`), POST .../submissions/{id}/transition/, GET /api/v1/users/me/. Request bodies are
checked against pyrolific 1.5.1's models of the published schema (enums, required shapes, no
unknown fields). Faults can be queued: a 429 with Retry-After, a 5xx that still applies the change.
"""
from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from flask import Flask, jsonify, request
from pyrolific.models.create_study import CreateStudy
from pyrolific.models.study_transition import StudyTransition
from pyrolific.models.submission_transition import SubmissionTransition
from werkzeug.serving import make_server

DOCS_VERSION = "Prolific API v1 reference, docs.prolific.com, 2026-12; bodies checked with pyrolific 1.5.1"
REQUIRED_STUDY_FIELDS = ("name", "description", "external_study_url", "completion_codes",
                         "total_available_places", "estimated_completion_time", "reward")


def prolific_id() -> str:
    return secrets.token_hex(12)  # Prolific's ids: 24 lower-case hex characters


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass
class Fault:
    method: str
    path_part: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    apply: bool = False  # the change happens anyway (a 5xx after the work was done)


class ProlificStandIn:
    def __init__(self, token: str = "test-token", max_page_size: int = 4) -> None:
        self.token = token
        self.max_page_size = max_page_size
        self.studies: dict[str, dict] = {}
        self.submissions: dict[str, dict] = {}
        self.transitions: list[tuple[str, str]] = []  # (submission id, action) applied
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, full path, headers)
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        self.app = self._make_app()
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()

    # --- what Prolific's participants do
    def start_submission(self, study_id: str, participant_id: str | None = None) -> dict:
        submission = {"id": prolific_id(), "participant_id": participant_id or prolific_id(), "study_id": study_id,
                      "status": "ACTIVE", "started_at": now(), "completed_at": None, "has_siblings": False,
                      "study_code": None}
        self.submissions[submission["id"]] = submission
        self.studies[study_id]["places_taken"] += 1
        return submission

    def submit(self, submission_id: str, code: str) -> None:
        self.submissions[submission_id].update(status="AWAITING REVIEW", study_code=code, completed_at=now())

    def fail_next(self, method: str, path_part: str, status: int, headers: dict | None = None,
                  apply: bool = False) -> None:
        self.faults.append(Fault(method, path_part, status, headers or {}, apply))

    # --- the API
    def _make_app(self) -> Flask:
        app = Flask("prolific-standin")

        def error(status: int, detail: str):  # noqa: ANN202
            return jsonify({"error": {"status": status, "detail": detail}}), status

        @app.before_request
        def check():  # noqa: ANN202
            self.requests.append((request.method, request.full_path, dict(request.headers)))
            if request.headers.get("Authorization") != f"Token {self.token}":
                return error(401, "Invalid token.")
            for fault in self.faults:
                if fault.method == request.method and fault.path_part in request.path:
                    self.faults.remove(fault)
                    if fault.apply:
                        app.view_functions[request.endpoint](**request.view_args)
                    return jsonify({"error": {"detail": "fault"}}), fault.status, fault.headers
            return None

        @app.get("/api/v1/users/me/")
        def me():  # noqa: ANN202
            return jsonify({"id": "researcher", "email": "r@example.org"})

        @app.post("/api/v1/studies/")
        def create_study():  # noqa: ANN202
            body = request.get_json()
            problem = _schema_problem(body, CreateStudy) or next(
                (f"missing field {name}" for name in REQUIRED_STUDY_FIELDS if name not in body), None)
            if problem:
                return error(400, problem)
            study = {**body, "id": prolific_id(), "status": "UNPUBLISHED", "places_taken": 0}
            self.studies[study["id"]] = study
            return jsonify(study), 201

        @app.post("/api/v1/studies/<study_id>/transition/")
        def transition_study(study_id: str):  # noqa: ANN202
            problem = _schema_problem(request.get_json(), StudyTransition)
            if problem or study_id not in self.studies:
                return error(400 if problem else 404, problem or "Not found.")
            self.studies[study_id]["status"] = "ACTIVE"
            return jsonify(self.studies[study_id])

        @app.get("/api/v1/studies/<study_id>/")
        def get_study(study_id: str):  # noqa: ANN202
            return jsonify(self.studies[study_id]) if study_id in self.studies else error(404, "Not found.")

        @app.get("/api/v1/submissions/")
        def list_submissions():  # noqa: ANN202
            rows = [s for s in self.submissions.values() if s["study_id"] == request.args.get("study")]
            size = min(int(request.args.get("page_size", 20)), self.max_page_size)
            page = int(request.args.get("page", 1))
            chunk = rows[(page - 1) * size:page * size]
            more = page * size < len(rows)
            next_href = (f"{self.url}/api/v1/submissions/?study={request.args['study']}&page_size={size}"
                         f"&page={page + 1}") if more else None
            return jsonify({"results": [{k: v for k, v in s.items() if k != "study_id"} for s in chunk],
                            "_links": {"next": {"href": next_href, "title": "Next"}}, "meta": {"count": len(rows)}})

        @app.post("/api/v1/submissions/<submission_id>/transition/")
        def transition_submission(submission_id: str):  # noqa: ANN202
            body = request.get_json()
            problem = _schema_problem(body, SubmissionTransition)
            if problem:
                return error(400, problem)
            with self.lock:
                submission = self.submissions.get(submission_id)
                if submission is None:
                    return error(404, "Not found.")
                if submission["status"] != "AWAITING REVIEW":  # Prolific refuses a second transition
                    return error(400, f"Submission is {submission['status']}.")
                submission["status"] = {"APPROVE": "APPROVED", "REJECT": "REJECTED"}.get(body["action"], "APPROVED")
                self.transitions.append((submission_id, body["action"]))
            return jsonify(submission)

        return app


def _schema_problem(body: Any, model: type) -> str | None:
    """None when pyrolific's model of the schema takes the body whole (no unknown fields either)."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    try:
        parsed = model.from_dict(dict(body))
    except (KeyError, ValueError, TypeError) as exc:
        return f"invalid body: {type(exc).__name__}: {exc}"
    unknown = list(parsed.additional_properties)
    for item in getattr(parsed, "completion_codes", None) or []:
        unknown += list(item.additional_properties)
    return f"unknown fields: {', '.join(unknown)}" if unknown else None
