"""A client of the participant protocol (docs/protocol.md) with a pluggable transport, and a
launcher of `maco-study serve`. Standard library only (requests when a RequestsTransport is made);
never flask, the server's modules or torch."""
from .launcher import ServerProcess, ServerStartError, free_port, port_in_use
from .light_http import LightTransport
from .protocol import (ANSWER, STEP_PAGES, STUDY_PAGE, ProtocolError, StudyClient, answer_body, page_name, start_path,
                       step_request, trial_images)
from .retry import NO_RETRY, STUDY_JS, RetryRule, backoff_s, retry_after_s
from .transports import FlaskTransport, RequestsTransport, Transport, TransportError

__all__ = ["ANSWER", "STEP_PAGES", "STUDY_PAGE", "FlaskTransport", "LightTransport", "NO_RETRY", "ProtocolError", "RequestsTransport", "RetryRule",
           "STUDY_JS", "ServerProcess", "ServerStartError", "StudyClient", "Transport", "TransportError", "answer_body",
           "backoff_s", "free_port", "page_name", "port_in_use", "retry_after_s", "start_path", "step_request",
           "trial_images"]
