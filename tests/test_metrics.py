"""GET /metrics: Prometheus' text format for a scraper with METRICS_TOKEN, 404 otherwise."""

from __future__ import annotations

import re

from conftest import add_users, app_environ, freeze

from app import create_app
from app.archival.poll import Archivist, poll_user
from app.config import load_settings


def test_metrics_need_the_token_and_count_what_the_tables_hold(app, simulator, database_url, db_conn):
    freeze(simulator)
    users = add_users(app, simulator, ["sim-acct-sam", "sim-acct-riley"])
    archivist = Archivist.from_app(app)
    def api_requests():  # the simulator's per-endpoint counts ("api:<endpoint>"; per account beside them)
        return sum(n for k, n in simulator.stats().items() if k.startswith("api:") and k.count(":") == 1)

    before = api_requests()
    for user_id in users.values():
        assert poll_user(archivist, user_id).outcome == "archived"
    requests = api_requests() - before
    simulator.call("POST", "/_sim/faults", json={"account": "sim-acct-sam", "rules": [
        {"kind": "rate_limit", "remaining": 1, "retry_after": 60, "endpoints": ["recently_played"]}]})
    assert poll_user(archivist, users["sim-acct-sam"]).outcome == "paused"
    db_conn.execute("UPDATE users SET status = 'paused' WHERE id = %s", (users["sim-acct-riley"],))
    assert app.test_client().get("/metrics").status_code == 404  # no token set: no /metrics
    scraped = create_app({"TESTING": True}, settings=load_settings(app_environ(database_url, simulator.url,
                                                                               METRICS_TOKEN="s3cret-token")))
    try:
        client = scraped.test_client()
        assert client.get("/metrics").status_code == 404
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 404
        response = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
        assert response.status_code == 200 and response.content_type.startswith("text/plain; version=0.0.4")
        text = response.get_data(as_text=True)
    finally:
        scraped.extensions["database"].dispose()
    plays = db_conn.execute("SELECT count(*) FROM plays").fetchone()[0]
    assert plays > 50 and f"audiospective_plays {plays:g}" in text
    assert 'audiospective_users{status="active"} 1' in text and 'audiospective_users{status="paused"} 1' in text
    # Every Web API request the simulator saw, and the 429 (whose request counts too).
    assert requests >= 2 and f"audiospective_spotify_requests_total {requests + 1:g}" in text
    assert "audiospective_spotify_rate_limited_total 1" in text and "audiospective_spotify_paused 1" in text
    assert "audiospective_polls_last_hour" in text and "# TYPE audiospective_jobs gauge" in text
    for line in text.splitlines():  # every line is a comment or `name{labels} value`
        assert line.startswith("# ") or re.fullmatch(r'[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [-0-9.e+]+',
                                                      line), line
