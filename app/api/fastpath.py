"""POST /1/submit-listens answered in front of the Flask app: on the event loop of the
web process (SubmitListensASGI, what the Procfile runs), or in plain WSGI (SubmitListens,
for `wsgi:app` under a WSGI server).

A scrobbler sends one small request per track played, so this is by far the API's most
frequent request, and it does little: one statement (http.Receiver's steps). Flask's
request and response machinery, its hooks and its context cost the web process more than
that work itself, and a thread per request (waiting on that statement) costs it more
again: on the event loop, the requests that arrive while a statement runs go together
in the next one (ingest.AsyncWriter) with no thread to wake. Measured in bench.ingest.

The fast path takes a POST with its length declared and at most http.READ_FIRST_BYTES
long (a single listen or playing_now always is). On the event loop it also takes an
import batch up to submit.MAX_REQUEST_BYTES: answered by http.Receiver in a thread of the
loop's own executor (its token checked before its body is read), so that batches leave
the WEB_THREADS threads to pages. Everything else (a chunked body, a larger one, any
other path) goes on to Flask unchanged, and so does a request whose answer failed here
(the database not answering, say): the Flask view answers it afresh, with the app's
error pages in ListenBrainz's shape. All answer from http.Receiver, and the headers are
the same functions' (security, CORS, rate limit, request id), which tests hold equal.
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Awaitable, Callable, Iterable

from a2wsgi import WSGIMiddleware

from ..logs import request_id
from . import ingest, submit
from .http import CORS_HEADERS, READ_FIRST_BYTES, Answer, Receiver, rate_limit_headers, token_from

log = logging.getLogger(__name__)

PATH = "/1/submit-listens"


@dataclass(frozen=True)
class Responder:
    """An Answer as an HTTP response, the same from both fast paths."""
    receiver: Receiver
    security_headers: Callable[[str, str | None], dict]  # (scheme, X-Forwarded-Proto) -> headers

    def __call__(self, answer: Answer, *, scheme: str, forwarded_proto: str | None,
                 asked_request_id: str) -> tuple[int, dict[str, str], bytes]:
        payload = (json.dumps(answer.body, separators=(",", ":"), sort_keys=True) + "\n").encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(payload)), **CORS_HEADERS}
        if answer.usage is not None:
            headers |= rate_limit_headers(answer.usage, answer.status, self.receiver.clock())
        headers |= self.security_headers(scheme, forwarded_proto)
        headers["X-Request-ID"] = request_id(asked_request_id)
        return answer.status, headers, payload


def _declared(length: str | None, transfer_encoding: str | None) -> int | None:
    """The body's declared length, when it is declared (and not chunked) and not empty."""
    if length is None or not length.isdigit() or transfer_encoding or int(length) == 0:
        return None
    return int(length)


def _small(length: str | None, transfer_encoding: str | None) -> int | None:
    """The body's declared length when it is at most READ_FIRST_BYTES, else None."""
    declared = _declared(length, transfer_encoding)
    return declared if declared is not None and declared <= READ_FIRST_BYTES else None


class _ShortBody(Exception):
    """The client sent less than it declared."""


class SubmitListens:
    """The fast path in WSGI, in front of `flask_wsgi`."""

    def __init__(self, flask_wsgi: Callable, receiver: Receiver, respond: Responder):
        self.flask_wsgi = flask_wsgi
        self.receiver = receiver
        self.respond = respond

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.flask_wsgi(environ, start_response)
        length = _small(environ.get("CONTENT_LENGTH"), environ.get("HTTP_TRANSFER_ENCODING"))
        if length is None:
            return self.flask_wsgi(environ, start_response)
        body = environ["wsgi.input"].read(length)
        if len(body) != length:  # the client stopped short: Flask tells it so
            return self._to_flask(environ, start_response, body)
        try:
            answer = self.receiver.receive(token_from(environ.get("HTTP_AUTHORIZATION", "")), body, lambda: body)
        except Exception:  # noqa: BLE001 - Flask answers it, with the app's error handling
            log.debug("submit-listens answered by Flask after an error", exc_info=True)
            return self._to_flask(environ, start_response, body)
        status, headers, payload = self.respond(
            answer, scheme=environ.get("wsgi.url_scheme", "http"),
            forwarded_proto=environ.get("HTTP_X_FORWARDED_PROTO"), asked_request_id=environ.get("HTTP_X_REQUEST_ID", ""))
        start_response(f"{status} {HTTPStatus(status).phrase.upper()}", list(headers.items()))
        return [payload]

    def _to_flask(self, environ: dict, start_response: Callable, body: bytes) -> Iterable[bytes]:
        environ["wsgi.input"] = io.BytesIO(body)
        return self.flask_wsgi(environ, start_response)


class SubmitListensASGI:
    """The web process as an ASGI application (gunicorn's `asgi` worker): submit-listens
    on the event loop, with `writer` (import batches with the receiver's own writer, in a
    thread); every other request to `flask_wsgi` through a2wsgi, in a pool of `threads`
    threads (WEB_THREADS: the pages' share of the connections is sized from it)."""

    def __init__(self, flask_wsgi: Callable, receiver: Receiver, writer: ingest.AsyncWriter, respond: Responder, *,
                 threads: int):
        self.receiver = receiver
        self.writer = writer
        self.respond = respond
        self.flask = WSGIMiddleware(_for_flask(flask_wsgi), workers=threads)

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable) -> None:
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            return await self.flask(scope, receive, send)
        # In a context of its own: the server's task may carry one that a2wsgi's thread left
        # on the connection (see _for_flask), and this request's logs, and the threads it
        # starts, must not be stamped with another request's id and user.
        return await asyncio.get_running_loop().create_task(self._submit_listens(scope, receive, send),
                                                            context=contextvars.Context())

    async def _submit_listens(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable) -> None:
        headers = {name: value.decode("latin-1") for name, value in scope["headers"]
                   if name in (b"content-length", b"transfer-encoding", b"authorization", b"x-request-id",
                               b"x-forwarded-proto")}
        length = _declared(headers.get(b"content-length"), headers.get(b"transfer-encoding"))
        if length is None or length > submit.MAX_REQUEST_BYTES:  # Flask refuses them
            return await self.flask(scope, receive, send)
        token = token_from(headers.get(b"authorization", ""))
        read: list[bytes] = []
        try:
            if length <= READ_FIRST_BYTES:
                read.append(await _read(receive, length))
                if len(read[0]) != length:
                    raise _ShortBody
                answer = await self._answer(token, read[0])
            else:  # an import batch: read once its token is known good, all in a thread of its own
                answer = await asyncio.to_thread(self.receiver.receive, token, None,
                                                 _reader(receive, length, read, asyncio.get_running_loop()))
        except Exception as exc:  # noqa: BLE001 - Flask answers it, with the app's error handling
            if not isinstance(exc, _ShortBody):  # (the client stopped short: Flask tells it so)
                log.debug("submit-listens answered by Flask after an error", exc_info=True)
            return await self.flask(scope, _replay(read[0], receive) if read else receive, send)
        status, response_headers, payload = self.respond(
            answer, scheme=scope.get("scheme", "http"), forwarded_proto=headers.get(b"x-forwarded-proto"),
            asked_request_id=headers.get(b"x-request-id", ""))
        await send({"type": "http.response.start", "status": status,
                    "headers": [(name.lower().encode("latin-1"), value.encode("latin-1"))
                                for name, value in response_headers.items()]})
        await send({"type": "http.response.body", "body": payload})

    async def _answer(self, token: str | None, body: bytes) -> Answer:
        pending = self.receiver.start(token, body)
        if isinstance(pending, Answer):
            return pending
        answer, unwritten = self.receiver.finish(pending, await self.writer.submit(pending.request), lambda: body)
        if unwritten is not None:  # playing_now: rare enough for a thread and the pool
            await asyncio.to_thread(self.receiver.accept, *unwritten)
        return answer

    async def _lifespan(self, receive: Callable[[], Awaitable[dict]], send: Callable) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.writer.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _read(receive: Callable[[], Awaitable[dict]], length: int) -> bytes:
    """The request's body, up to `length` bytes (less if the client went away)."""
    body = b""
    while len(body) < length:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    return body[:length]


def _reader(receive: Callable[[], Awaitable[dict]], length: int, read: list[bytes],
            loop: asyncio.AbstractEventLoop) -> Callable[[], bytes]:
    """read_body() for a thread: the body, from the event loop, kept in `read`."""
    def read_body() -> bytes:
        read.append(asyncio.run_coroutine_threadsafe(_read(receive, length), loop).result())
        if len(read[0]) != length:
            raise _ShortBody
        return read[0]
    return read_body


def _replay(body: bytes, receive: Callable[[], Awaitable[dict]]) -> Callable[[], Awaitable[dict]]:
    """`receive` for Flask, giving back the body the fast path read first."""
    given = False

    async def replayed() -> dict:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}
    return replayed


def _for_flask(wsgi: Callable) -> Callable:
    """`wsgi` as a2wsgi's threads call it, each request in an empty context.

    a2wsgi runs a request in a copy of its event-loop task's context, and the calls its
    thread makes back into the loop (reading the body, sending the answer) carry that
    thread's context, Flask's app context among it, into tasks of the loop; a later
    request's copy can inherit it. Flask then pushes no app context of its own, and two
    requests share one `g`, one database session (seen in the tests: a session left in
    a transaction, and "another command is already in progress"). So Flask starts from
    nothing, every time.

    And a2wsgi's input ends where the body does, a chunked one too: saying so, as
    gunicorn's own workers do, is what lets werkzeug read a body of no declared length."""
    def app(environ: dict, start_response: Callable):
        environ["wsgi.input_terminated"] = True
        return contextvars.Context().run(wsgi, environ, start_response)
    return app
