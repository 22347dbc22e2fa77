"""The web process as the Procfile runs it: gunicorn's `asgi` worker serving wsgi.py's
`asgi` (api.routes.asgi_app), submit-listens on the event loop and the rest of the app
in a2wsgi's threads. Over real HTTP, in the test process (uvicorn: the `server` fixture)."""

from __future__ import annotations

import json
import shlex

import pytest
import requests
from flask import g, request

from app.runner import web_command
from conftest import procfile, sign_in, wait_for
from test_listens import _one, _post, _token_for


def test_the_procfile_runs_the_web_process_as_audiospective_run_and_the_benchmark_do():
    ours = web_command("0.0.0.0:${PORT:-5000}", "${WEB_CONCURRENCY:-2}")
    assert ours[:3] == [ours[0], "-m", "gunicorn"] and "--threads" not in ours
    assert shlex.split(procfile()["web"]) == ["gunicorn", *ours[3:], "--access-logfile", "-"]


def test_the_event_loops_connection_lost_costs_no_listen_and_is_opened_again(app, db_conn, server):
    """The fast path's own connection (ingest.AsyncWriter) killed by the server: the
    request that meets it is answered by the Flask view instead, and the next ones are
    written on a new connection."""
    sign_in(app.test_client(), "sim-acct-sam")
    token, _ = _token_for(app, "sim-acct-sam")
    single = lambda ts: {"listen_type": "single", "payload": [_one(ts)]}  # noqa: E731

    def writers() -> list[int]:
        return [row[0] for row in db_conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND query LIKE '%%WITH request AS%%'")]

    assert _post(server, token, single(1_600_000_000)).status_code == 200
    first = writers()
    assert len(first) == 1  # only the event loop's connection has written
    db_conn.execute("SELECT pg_terminate_backend(%s)", first)
    wait_for(lambda: not writers(), message="the connection gone")
    for ts in (1_600_000_300, 1_600_000_600, 1_600_000_900):
        answer = _post(server, token, single(ts))
        assert answer.status_code == 200, answer.text
    assert db_conn.execute("SELECT count(*) FROM listen_inbox").fetchone()[0] == 4
    assert [pid for pid in writers() if pid not in first]  # a new one


def _batch_through_flask(http: requests.Session, server, token: str, n: int) -> None:
    """A batch of ~200 KB (over the 64 KB that pause a connection's reading), sent chunked
    so that the Flask view answers it, on the session's connection."""
    batch = {"listen_type": "import", "payload": [
        _one(1_600_000_000 + 1000 * n + i, release_name="r" * 150) for i in range(1000)]}
    data = json.dumps(batch).encode()
    chunks = iter([data[i:i + 65536] for i in range(0, len(data), 65536)])
    answer = http.post(f"{server.url}/1/submit-listens", data=chunks, timeout=30,
                       headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text


@pytest.fixture
def marked_app(app):
    """The app noting any request that finds an earlier request's `g`."""
    app.config["INHERITED"] = []

    @app.before_request
    def mark():
        if "marker" in g:
            app.config["INHERITED"].append((request.path, g.marker))
        g.marker = request.path
    return app


def test_a_request_never_finds_an_earlier_ones_flask_context(marked_app, server):
    """Each request through a2wsgi gets an app context (a `g`, a database session) of its
    own. A body large enough to pause the connection's reading, read by Flask, used to
    leave Flask's context on the connection (its reading resumed from the request's
    thread), and the connection's next request inherited it: two requests, one session."""
    sign_in(marked_app.test_client(), "sim-acct-sam")
    token, _ = _token_for(marked_app, "sim-acct-sam")
    with requests.Session() as http:
        for n in range(5):
            _batch_through_flask(http, server, token, n)
            assert http.get(f"{server.url}/1/validate-token", params={"token": token}, timeout=30).json()["valid"]
    assert marked_app.config["INHERITED"] == []


def test_the_fast_path_runs_outside_any_flask_context(marked_app, server, monkeypatch):
    """What the fast path does (and logs) after a Flask request on the same connection is
    not in that request's context: its log lines would carry another request's id and user."""
    from flask import has_request_context

    sign_in(marked_app.test_client(), "sim-acct-sam")
    token, _ = _token_for(marked_app, "sim-acct-sam")
    from app.api import submit

    seen = []
    parse = submit.parse

    def noted(raw, **kwargs):
        if len(raw) < 1000:  # the single listens (the fast path's), not the batches (Flask's)
            seen.append(has_request_context())
        return parse(raw, **kwargs)
    monkeypatch.setattr(submit, "parse", noted)
    with requests.Session() as http:
        for n in range(5):
            _batch_through_flask(http, server, token, n)
            assert http.post(f"{server.url}/1/submit-listens", data=json.dumps({
                "listen_type": "single", "payload": [_one(1_700_000_000 + n)]}), timeout=30, headers={
                "Authorization": f"Token {token}", "Content-Type": "application/json"}).status_code == 200
    assert seen == [False] * 5
