"""The simulator speaks Spotify's semantics (docs/spotify.md), tested over real HTTP."""

from __future__ import annotations

import base64
import re
from datetime import datetime

import pytest
import requests

from app.config import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from app.simulator import World
from conftest import consent

REDIRECT = "http://127.0.0.1:5000/auth/callback"
BASIC = {"Authorization": "Basic " + base64.b64encode(f"{DEMO_CLIENT_ID}:{DEMO_CLIENT_SECRET}".encode()).decode()}
PLAYED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def authorize_url(sim, scope="user-read-recently-played", state="s1") -> str:
    return (f"{sim.url}/authorize?client_id={DEMO_CLIENT_ID}&response_type=code&redirect_uri={REDIRECT}"
            f"&state={state}&scope={scope}")


def code_for(sim, account="sim-acct-riley") -> str:
    callback = consent(authorize_url(sim), account)
    assert callback.startswith(REDIRECT) and "state=s1" in callback
    return re.search(r"code=([^&]+)", callback).group(1)


def token(sim, **form) -> requests.Response:
    return requests.post(f"{sim.url}/api/token", data=form, headers=BASIC, timeout=10)


def grant(sim, account="sim-acct-riley") -> dict:
    response = token(sim, grant_type="authorization_code", code=code_for(sim, account), redirect_uri=REDIRECT)
    assert response.status_code == 200, response.text
    return response.json()


def api(sim, access_token, path, **params) -> requests.Response:
    return requests.get(f"{sim.url}{path}", params=params, headers={"Authorization": f"Bearer {access_token}"},
                        timeout=10)


def recent(sim, access_token, **params) -> dict:
    response = api(sim, access_token, "/v1/me/player/recently-played", **params)
    assert response.status_code == 200, response.text
    return response.json()


def ms(item) -> int:
    return int(datetime.fromisoformat(item["played_at"].replace("Z", "+00:00")).timestamp() * 1000)


# --- accounts service ----------------------------------------------------------------------


def test_consent_page_lists_simulated_accounts(simulator):
    page = requests.get(authorize_url(simulator), timeout=10)
    assert page.status_code == 200
    for name in ("Riley Demo", "Sam Binge", "Jo Light", "Max Skips", "Dana Outsider"):
        assert name in page.text
    assert "not on the app's allow-list" in page.text


def test_authorize_rejects_unknown_client_and_scope(simulator):
    bad_client = requests.get(authorize_url(simulator).replace(DEMO_CLIENT_ID, "someone-else"), timeout=10)
    assert bad_client.status_code == 400 and "INVALID_CLIENT" in bad_client.text
    bad_scope = requests.get(authorize_url(simulator, scope="user-read-everything"), timeout=10)
    assert bad_scope.status_code == 400 and "invalid_scope" in bad_scope.text


def test_cancel_redirects_with_access_denied(simulator):
    callback = consent(authorize_url(simulator), decision="cancel")
    assert callback == f"{REDIRECT}?error=access_denied&state=s1"


def test_code_exchange_needs_client_auth_and_is_single_use(simulator):
    code = code_for(simulator)
    unauthenticated = requests.post(f"{simulator.url}/api/token", timeout=10,
                                    data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT})
    assert unauthenticated.status_code == 401 and unauthenticated.json()["error"] == "invalid_client"
    assert token(simulator, grant_type="authorization_code", code=code, redirect_uri="http://127.0.0.1:1/x"
                 ).json()["error"] == "invalid_grant"  # bound to its redirect URI, and now spent
    code = code_for(simulator)
    first = token(simulator, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert first.status_code == 200
    body = first.json()
    assert body["expires_in"] == 3600 and body["token_type"] == "Bearer" and body["refresh_token"]
    again = token(simulator, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_refresh_keeps_the_refresh_token_unless_rotation_is_on(simulator):
    g = grant(simulator)
    plain = token(simulator, grant_type="refresh_token", refresh_token=g["refresh_token"]).json()
    assert "refresh_token" not in plain and plain["access_token"] != g["access_token"]

    simulator.world.config.rotate_refresh_tokens = True
    rotated = token(simulator, grant_type="refresh_token", refresh_token=g["refresh_token"]).json()
    assert rotated["refresh_token"] != g["refresh_token"]
    stale = token(simulator, grant_type="refresh_token", refresh_token=g["refresh_token"])
    assert stale.status_code == 400 and stale.json()["error"] == "invalid_grant"
    assert token(simulator, grant_type="refresh_token", refresh_token=rotated["refresh_token"]).status_code == 200


def test_revoked_and_six_month_old_refresh_tokens_get_invalid_grant(simulator):
    g = grant(simulator, "sim-acct-jo")
    simulator.call("POST", "/_sim/accounts/sim-acct-jo/revoke")
    assert token(simulator, grant_type="refresh_token", refresh_token=g["refresh_token"]).json()["error"] == "invalid_grant"
    assert api(simulator, g["access_token"], "/v1/me").status_code == 401

    g = grant(simulator, "sim-acct-sam")
    simulator.call("POST", "/_sim/clock", json={"advance_ms": 184 * 86_400_000})
    assert token(simulator, grant_type="refresh_token", refresh_token=g["refresh_token"]).json()["error"] == "invalid_grant"


def test_access_tokens_expire(simulator):
    g = grant(simulator)
    assert api(simulator, g["access_token"], "/v1/me").status_code == 200
    simulator.call("POST", "/_sim/clock", json={"advance_ms": 3_601_000})
    expired = api(simulator, g["access_token"], "/v1/me")
    assert expired.status_code == 401 and expired.json()["error"]["message"] == "The access token expired"


# --- Web API -------------------------------------------------------------------------------


def test_me_has_account_id_except_for_legacy_profiles(simulator):
    me = api(simulator, grant(simulator)["access_token"], "/v1/me").json()
    assert me["id"] == "riley.demo" and me["account_id"] == "sim-acct-riley" and me["display_name"] == "Riley Demo"
    legacy = api(simulator, grant(simulator, "legacy.lee")["access_token"], "/v1/me").json()
    assert legacy["id"] == "legacy.lee" and "account_id" not in legacy


def test_accounts_missing_from_the_allow_list_get_403(simulator):
    response = api(simulator, grant(simulator, "sim-acct-dana")["access_token"], "/v1/me")
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "User not registered in the Developer Dashboard"


def test_recently_played_shape_order_and_the_50_play_window(simulator):
    access = grant(simulator, "sim-acct-sam")["access_token"]  # binge: far more than 50 plays a day
    page = recent(simulator, access, limit=50)
    items = page["items"]
    assert len(items) == 50
    assert all(PLAYED_AT.match(i["played_at"]) for i in items)
    times = [ms(i) for i in items]
    assert times == sorted(times, reverse=True) and len(set(times)) == 50
    assert page["cursors"] == {"after": str(times[0]), "before": str(times[-1])}
    track = items[0]["track"]
    assert {"id", "uri", "name", "duration_ms", "explicit", "external_ids", "is_local", "artists", "album"} <= set(track)
    assert track["album"]["images"][0]["width"] >= track["album"]["images"][-1]["width"]

    # Following `next` after a full page of 50 yields nothing: older plays are gone.
    assert page["next"]
    beyond = requests.get(page["next"], headers={"Authorization": f"Bearer {access}"}, timeout=10).json()
    assert beyond["items"] == [] and beyond["cursors"] is None and beyond["next"] is None

    # Ground truth knows of more reported plays in the last week than the API will ever show.
    truth = simulator.call("GET", "/_sim/ground-truth/sim-acct-sam", params={
        "from_ms": times[0] - 7 * 86_400_000, "to_ms": times[0] + 1}).json()["plays"]
    visible = [p["played_at_ms"] for p in truth if p["visible"]]
    assert len(visible) > 100
    assert sorted(visible, reverse=True)[:50] == times


def test_recently_played_paging_and_cursors(simulator):
    access = grant(simulator, "sim-acct-sam")["access_token"]
    everything = [ms(i) for i in recent(simulator, access, limit=50)["items"]]
    collected, before = [], None
    while True:
        params = {"limit": 20} | ({"before": before} if before else {})
        page = recent(simulator, access, **params)
        if not page["items"]:
            break
        collected += [ms(i) for i in page["items"]]
        before = page["cursors"]["before"]
    assert collected == everything  # 20 + 20 + 10, then nothing

    newer = recent(simulator, access, after=everything[10])
    assert [ms(i) for i in newer["items"]] == everything[:10]
    assert recent(simulator, access, after=everything[0]) == {
        "items": [], "next": None, "cursors": None, "limit": 20, "href": newer["href"].replace(
            str(everything[10]), str(everything[0]))}


@pytest.mark.parametrize("params", [{"limit": 51}, {"limit": 0}, {"after": 1, "before": 2}, {"after": "x"}])
def test_recently_played_rejects_bad_parameters(simulator, params):
    access = grant(simulator)["access_token"]
    assert api(simulator, access, "/v1/me/player/recently-played", **params).status_code == 400


def test_recently_played_needs_its_scope(simulator):
    callback = consent(authorize_url(simulator, scope="user-top-read"))
    code = re.search(r"code=([^&]+)", callback).group(1)
    access = token(simulator, grant_type="authorization_code", code=code, redirect_uri=REDIRECT).json()["access_token"]
    assert api(simulator, access, "/v1/me/player/recently-played").status_code == 403


def test_short_and_private_plays_are_never_reported(simulator):
    access = grant(simulator, "sim-acct-max")["access_token"]  # skip-heavy
    reported = {ms(i) for i in recent(simulator, access, limit=50)["items"]}
    truth = simulator.call("GET", "/_sim/ground-truth/sim-acct-max", params={"from_ms": min(reported)}).json()["plays"]
    hidden = [p for p in truth if not p["visible"]]
    assert hidden, "skip-heavy listeners abandon many plays"
    assert all(p["ms_played"] < 30_000 or p["played_at_ms"] not in reported for p in hidden)
    assert not reported & {p["played_at_ms"] for p in hidden}


def test_listening_is_deterministic_by_seed():
    def recent_for(seed):
        world = World(seed=seed, client_id="c", client_secret="s")
        return [(p.played_at_ms, p.track_index) for p in world.recent_visible(world.account("sim-acct-riley"),
                                                                              1_790_000_000_000)]

    assert recent_for(7) == recent_for(7)
    assert recent_for(7) != recent_for(8)


def test_clock_can_be_frozen_and_moved(simulator):
    access = grant(simulator, "sim-acct-sam")["access_token"]
    now = [ms(i) for i in recent(simulator, access, limit=50)["items"]]
    simulator.call("POST", "/_sim/clock", json={"now_ms": now[25], "frozen": True})
    earlier = [ms(i) for i in recent(simulator, access, limit=50)["items"]]
    assert earlier[0] == now[25] and len(earlier) == 50
    assert simulator.call("GET", "/_sim/clock").json()["frozen"] is True


# --- catalogue -----------------------------------------------------------------------------


def test_catalogue_single_and_batch_and_the_dev_mode_switch(simulator):
    access = grant(simulator)["access_token"]
    items = recent(simulator, access, limit=50)["items"]
    track = items[0]["track"]
    single = api(simulator, access, f"/v1/tracks/{track['id']}").json()
    assert single["id"] == track["id"] and single["name"] == track["name"]
    artist_ids = list({a["id"] for i in items for a in i["track"]["artists"]})[:20]
    batch = api(simulator, access, "/v1/artists", ids=",".join(artist_ids)).json()["artists"]
    assert [a["id"] for a in batch] == artist_ids and all(a["genres"] for a in batch)
    album_ids = list({i["track"]["album"]["id"] for i in items})[:20]
    assert len(api(simulator, access, "/v1/albums", ids=",".join(album_ids)).json()["albums"]) == len(album_ids)

    assert api(simulator, access, "/v1/tracks", ids=",".join([track["id"]] * 51)).status_code == 400
    assert api(simulator, access, "/v1/tracks/" + "0" * 22).status_code == 404
    assert api(simulator, access, "/v1/tracks", ids=f"{track['id']},{'0' * 22}").json()["tracks"][1] is None

    simulator.call("POST", "/_sim/config", json={"batch_endpoints": False, "dev_mode_fields": True})
    refused = api(simulator, access, "/v1/artists", ids=",".join(artist_ids))
    assert refused.status_code == 403 and "not registered" not in refused.text
    artist = api(simulator, access, f"/v1/artists/{artist_ids[0]}").json()
    assert artist["genres"] == [] and "popularity" not in artist


# --- faults --------------------------------------------------------------------------------


def test_fault_injection_rate_limit_then_recovery(simulator):
    access = grant(simulator)["access_token"]
    simulator.call("POST", "/_sim/faults", json={"account": "sim-acct-riley", "rules": [
        {"kind": "rate_limit", "retry_after": 120, "remaining": 1, "endpoints": ["recently_played"]}]})
    limited = api(simulator, access, "/v1/me/player/recently-played")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "120"
    assert api(simulator, access, "/v1/me/player/recently-played").status_code == 200
    assert simulator.stats()["fault:rate_limit"] == 1


def test_fault_injection_malformed_and_server_errors(simulator):
    access = grant(simulator)["access_token"]
    simulator.call("POST", "/_sim/faults", json={"rules": [{"kind": "malformed", "remaining": 1},
                                                            {"kind": "server_error", "status": 502, "remaining": 1}]})
    broken = api(simulator, access, "/v1/me")
    assert broken.status_code == 200
    with pytest.raises(ValueError):
        broken.json()
    assert api(simulator, access, "/v1/me").status_code == 502
    assert api(simulator, access, "/v1/me").status_code == 200
    bad = requests.post(f"{simulator.url}/_sim/faults", json={"rules": [{"kind": "gremlins"}]}, timeout=10)
    assert bad.status_code == 400 and "fault kind" in bad.json()["error"]["message"]


def test_late_plays_appear_after_their_delay(simulator):
    simulator.world.config.access_token_ttl_s = 86_400  # outlive the clock jump below
    access = grant(simulator, "sim-acct-sam")["access_token"]
    newest = ms(recent(simulator, access, limit=50)["items"][0])
    # A second after the newest play ended: with every delay at least 12 minutes, it cannot be in yet.
    simulator.call("POST", "/_sim/clock", json={"now_ms": newest + 1000, "frozen": True})
    on_time = [ms(i) for i in recent(simulator, access, limit=50)["items"]]
    simulator.call("POST", "/_sim/faults", json={"rules": [{"kind": "late_plays", "delay_s": 7200, "fraction": 1.0}]})
    delayed = [ms(i) for i in recent(simulator, access, limit=50)["items"]]
    assert on_time[0] == newest and newest not in delayed
    simulator.call("POST", "/_sim/clock", json={"advance_ms": 7_200_000})
    assert max(ms(i) for i in recent(simulator, access, limit=50)["items"]) >= on_time[0]
