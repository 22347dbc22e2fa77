"""What the API answers, apart from Flask: ListenBrainz's error shape, its CORS and
rate-limit headers, and the whole of a submit-listens request. The Flask views
(routes.py) and the WSGI fast path for submit-listens (fastpath.py) both answer from here,
so the two cannot drift apart."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from ..limits import Limit, Usage
from ..time import Clock
from . import ingest, submit

RATE_WINDOW = timedelta(seconds=10)
# A body this small (a single listen, playing_now) is read before the token is checked,
# so that checking the token, counting the request and writing the listen are one
# statement; a larger one is read only for a live token within its limit.
READ_FIRST_BYTES = 16 * 1024

# CORS as ListenBrainz answers it (any origin: a token, never a cookie, authenticates), so
# players that are web pages can scrobble.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Expose-Headers": "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset-In, "
                                     "X-RateLimit-Reset, Retry-After",
}


def api_limit(requests_per_10s: int) -> Limit:
    return Limit("api", requests_per_10s, RATE_WINDOW)


def error(code: int, message: str) -> dict:
    """An error in ListenBrainz's shape."""
    return {"code": code, "error": message}


def too_many(usage: Usage, now: datetime) -> dict:
    wait = max(1, math.ceil((usage.resets_at - now).total_seconds()))
    return error(429, f"Too many requests: at most {usage.limit} in {int(RATE_WINDOW.total_seconds())} seconds. "
                      f"Wait {wait} s (X-RateLimit-Reset-In) and try again.")


def rate_limit_headers(usage: Usage, status: int, now: datetime) -> dict[str, str]:
    """Where the client stands in its rate limit, in ListenBrainz's X-RateLimit-* headers."""
    reset_in = max(0, math.ceil((usage.resets_at - now).total_seconds()))
    headers = {"X-RateLimit-Limit": str(usage.limit), "X-RateLimit-Remaining": str(usage.remaining),
               "X-RateLimit-Reset-In": str(reset_in), "X-RateLimit-Reset": str(int(usage.resets_at.timestamp()))}
    if status == 429:
        headers["Retry-After"] = str(max(1, reset_in))
    return headers


def token_from(authorization: str) -> str | None:
    """The token as ListenBrainz's clients send it: `Authorization: Token <token>`."""
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "token" and value.strip() else None


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict
    usage: Usage | None = field(default=None)


@dataclass(frozen=True)
class Pending:
    """A submit-listens request that passed what needs no database: its part in the
    writer's next statement, and its body as parsed (or what is wrong with it)."""
    request: ingest.Request
    submission: submit.Submission | None
    problem: str | None


@dataclass(frozen=True)
class Receiver:
    """submit-listens for one app: its writer (one per process), database and clock. The
    steps are apart (start, the writer, finish, accept) so that the event loop's fast
    path (fastpath.SubmitListensASGI) takes the same ones with a writer of its own."""
    writer: object  # GroupCommit[ingest.Request, ingest.Authorised]
    database: object
    clock: Clock

    def receive(self, token: str | None, small_body: bytes | None, read_body: Callable[[], bytes]) -> Answer:
        """A submit-listens request, answered in ListenBrainz's order: the token, the rate
        limit, then the body; nothing is written for a refused request. `small_body` is the
        body when it is at most READ_FIRST_BYTES (else None: `read_body()` reads it once the
        token is known to be good)."""
        pending = self.start(token, small_body)
        if isinstance(pending, Answer):
            return pending
        answer, unwritten = self.finish(pending, self.writer.submit(pending.request), read_body)
        if unwritten is not None:
            self.accept(*unwritten)
        return answer

    def start(self, token: str | None, small_body: bytes | None) -> Answer | Pending:
        if token is None:
            return Answer(401, error(401, "You need to provide an Authorization header."))
        submission = problem = None
        if small_body is not None:
            submission, problem = self._parse(small_body)
        listens = submission if submission is not None and submission.listen_type != submit.PLAYING_NOW else None
        return Pending(ingest.Request(token, listens), submission, problem)

    def finish(self, pending: Pending, who: ingest.Authorised, read_body: Callable[[], bytes]
               ) -> tuple[Answer, tuple[int, submit.Submission] | None]:
        """The answer, once the writer has checked the token (and written what it could),
        and what is left for accept() to write: (user id, submission) or None."""
        submission, problem = pending.submission, pending.problem
        if who.user_id is None:
            return Answer(401, error(401, "Invalid authorization token."), who.usage), None
        if who.usage.used > who.usage.limit:
            return Answer(429, too_many(who.usage, self.clock()), who.usage), None
        if submission is None and problem is None:
            submission, problem = self._parse(read_body())
        if problem is not None:
            return Answer(400, error(400, problem), who.usage), None
        return Answer(200, {"status": "ok"}, who.usage), None if who.written else (who.user_id, submission)

    def accept(self, user_id: int, submission: submit.Submission) -> None:
        with self.database.connection(autocommit=True) as conn:
            ingest.accept(conn, user_id, submission, now=self.clock())

    def _parse(self, body: bytes) -> tuple[submit.Submission | None, str | None]:
        try:
            return submit.parse(body, now_s=int(self.clock().timestamp())), None
        except submit.SubmitError as exc:
            return None, str(exc)
