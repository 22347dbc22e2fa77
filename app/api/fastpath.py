"""POST /1/submit-listens in plain WSGI, in front of the Flask app.

A scrobbler sends one small request per track played, so this is by far the API's most
frequent request, and it does little: one statement (http.Receiver). Flask's request
and response machinery, its hooks and its context cost the web process more than that
work itself; answered here, a single listen costs about half as much CPU in the web process.

Only the common case is taken: a POST with its length declared and at most
http.READ_FIRST_BYTES long (a single listen or playing_now always is). Everything else
(a larger import batch, a chunked body, any other path) goes on to Flask unchanged, and
so does a request whose answer failed here (the database not answering, say): the Flask
view answers it afresh, with the app's error pages in ListenBrainz's shape. Both answer
from http.Receiver, and the headers are the same functions' (security, CORS, rate limit,
request id), which tests hold equal.
"""

from __future__ import annotations

import io
import json
import logging
from http import HTTPStatus
from typing import Callable, Iterable

from ..logs import request_id
from .http import CORS_HEADERS, READ_FIRST_BYTES, Receiver, rate_limit_headers, token_from

log = logging.getLogger(__name__)

PATH = "/1/submit-listens"


class SubmitListens:
    def __init__(self, flask_wsgi: Callable, receiver: Receiver, security_headers: Callable[[bool], dict]):
        self.flask_wsgi = flask_wsgi
        self.receiver = receiver
        self.security_headers = security_headers  # (whether the request came over https) -> headers

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.flask_wsgi(environ, start_response)
        length = environ.get("CONTENT_LENGTH") or ""
        if not (length.isdigit() and 0 < int(length) <= READ_FIRST_BYTES) or environ.get("HTTP_TRANSFER_ENCODING"):
            return self.flask_wsgi(environ, start_response)
        body = environ["wsgi.input"].read(int(length))
        if len(body) != int(length):  # the client stopped short: Flask tells it so
            return self._to_flask(environ, start_response, body)
        try:
            answer = self.receiver.receive(token_from(environ.get("HTTP_AUTHORIZATION", "")), body, lambda: body)
        except Exception:  # noqa: BLE001 - Flask answers it, with the app's error handling
            log.debug("submit-listens answered by Flask after an error", exc_info=True)
            return self._to_flask(environ, start_response, body)
        payload = (json.dumps(answer.body, separators=(",", ":"), sort_keys=True) + "\n").encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(payload)), **CORS_HEADERS}
        if answer.usage is not None:
            headers |= rate_limit_headers(answer.usage, answer.status, self.receiver.clock())
        headers |= self.security_headers(environ.get("wsgi.url_scheme") == "https")
        headers["X-Request-ID"] = request_id(environ.get("HTTP_X_REQUEST_ID", ""))
        start_response(f"{answer.status} {HTTPStatus(answer.status).phrase.upper()}", list(headers.items()))
        return [payload]

    def _to_flask(self, environ: dict, start_response: Callable, body: bytes) -> Iterable[bytes]:
        environ["wsgi.input"] = io.BytesIO(body)
        return self.flask_wsgi(environ, start_response)
