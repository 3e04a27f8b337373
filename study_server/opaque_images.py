"""GET /img/<token>: a trial's base and query images, answered before Flask.

These are the app's most frequent requests (three or more per trial: 56 % of what the app answered
in benchmarks/load_server.py), and each is a small decision: whose session, may this participant see
this image now, record it as sent, send it. Through Flask, the request context, the session's
open and save, the hooks and the response object cost more than the decision itself; here an
image costs the decision and one write (benchmarks/RESULTS.md, issue 28: the answer path off the ORM).

Nothing a participant or a script could tell apart changes:
- the session cookie is read as Flask reads it (`VerifiedOnceSessionInterface.cookie_values`:
  signature, lifetime), and never written (an image never changed the session);
- the images limit (RATE_LIMIT_IMAGES, limits.py) is counted here, once per request, keyed as
  before (the participant, else the client address after ProxyFix);
- an image is sent only under this participant's opaque id, only for a trial reached, and only
  once recorded as sent (speed.py); the reply carries the same headers as before
  (`Vary: Cookie`; the security headers are added around it, headers.py) and the same body: the bytes with an ETag (conditional requests and
  ranges as werkzeug answers them), or the web server's X-Accel-Redirect / X-Sendfile header
  (SEND_IMAGES, images.py).
Every refusal goes on to Flask with its reason in the WSGI environ, and the view
(participant.image) answers it as before: 404, the 429 page with Retry-After, or the 500 of an
error (logged by Flask). Any other method, or a path with no token, is Flask's routing's.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from flask import Flask
from werkzeug.http import parse_cookie
from werkzeug.wrappers import Response

from .images import SENT_IMAGES_LOCATION
from .limits import RateLimits, participant_key_of
from .plan import EXAMPLE_SCOPE
from .state import ServerState

IMAGE_PREFIX = "/img/"
IMAGE_ENDPOINT = "participant.image"  # the Flask route of the same URLs (refusals, url_for)
IMAGE_CACHE_CONTROL = "private, max-age=86400, immutable"  # the browser only: never a shared cache
# the WSGI environ keys that tell the view why the middleware did not send the image
RETRY_AFTER = "maco.image.retry_after"  # over the images limit: seconds to wait
FAILURE = "maco.image.failure"  # an exception while recording or sending (the view raises it)


class OpaqueImages:
    """WSGI middleware: GET/HEAD /img/<token> for the image the participant may see, else `app`."""

    def __init__(self, app: Callable, flask_app: Flask, server_state: ServerState, rate_limits: RateLimits):
        self.app = app
        self.flask_app = flask_app
        self.state = server_state
        self.rate_limits = rate_limits
        self.cookie_name = flask_app.session_interface.get_cookie_name(flask_app)
        self.mode = flask_app.config["SEND_IMAGES"]

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not path.startswith(IMAGE_PREFIX) or environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            return self.app(environ, start_response)
        token = path[len(IMAGE_PREFIX):]
        if not token or "/" in token:
            return self.app(environ, start_response)  # not the route: Flask's 404
        cookie = parse_cookie(environ).get(self.cookie_name)
        values = self.flask_app.session_interface.cookie_values(self.flask_app, cookie)
        participant_id, served = values.get("participant"), values.get("served")
        try:
            retry_after = None
            if self.rate_limits.enabled:
                key = participant_key_of(participant_id, environ.get("REMOTE_ADDR"))
                retry_after = self.rate_limits.hit(IMAGE_ENDPOINT, key)
            image_id = None if retry_after is not None else self._allowed(participant_id, served, token)
            if image_id is not None:
                return self._send(image_id, token, environ, start_response)
        except Exception as exc:  # noqa: BLE001 - answered by Flask, as any view's error (a limits store down too)
            environ[FAILURE] = exc
            return self.app(environ, start_response)
        if retry_after is not None:
            environ[RETRY_AFTER] = retry_after
        return self.app(environ, start_response)  # the view's 429, or its 404

    def _allowed(self, participant_id: int | None, served: int | None, token: str) -> str | None:
        """The image under `token` if this participant may have it now (recorded as sent), else None.
        An image of a trial not yet reached is refused even under its valid id (the instructions'
        example, a practice pair whose side it never shows, is open from the start)."""
        if participant_id is None:
            return None
        image_id, scope = self.state.participant_images(participant_id).get(token, (None, None))
        if image_id is None:
            return None
        if scope != EXAMPLE_SCOPE:
            if served is None or image_id not in self.state.reached_images(participant_id, served):
                return None
            self.state.record_served(participant_id, token)  # committed before it leaves: what an answer requires
        return image_id

    def _send(self, image_id: str, token: str, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        """The image's bytes, or the web server's header naming the file that holds them (SEND_IMAGES).

        Queries have a size that says nothing of the side (images.py). Nothing in the reply names the
        image: no file name, Last-Modified or content hash; the ETag is the opaque id of the URL, so a
        revalidation (a reload) is answered 304 without the bytes."""
        images = self.state.images
        headers = [("Content-Type", "image/png"), ("Cache-Control", IMAGE_CACHE_CONTROL), ("Vary", "Cookie")]
        if self.mode == "x-accel-redirect":  # nginx consumes the header and sends the file; the browser sees neither
            headers.append(("X-Accel-Redirect", SENT_IMAGES_LOCATION + images.sent_file(image_id).name))
        elif self.mode == "x-sendfile":
            headers.append(("X-Sendfile", str(images.sent_file(image_id))))
        else:
            data = images.read(image_id)
            response = Response(data, headers=headers)
            response.set_etag(token)
            response.make_conditional(environ, accept_ranges=True, complete_length=len(data))
            return response(environ, start_response)
        start_response("200 OK", [*headers, ("Content-Length", "0")])
        return []
