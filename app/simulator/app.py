"""Spotify's wire format over a `World`: the accounts service, the Web API subset the
product uses, and a `/_sim` control API for tests, benchmarks and curious developers.

Semantics follow SPOTIFY.md. Recently-played: `limit` 1..50, `after` or `before` (Unix
ms, never both), newest first, only the last 50 reported plays exist; `cursors` is null on
an empty page; `next` (a `before` URL) is given on a full page, and following it after a
page of 50 yields nothing. With `after`, the page is the newest `limit` plays after the
cursor (at limit 50 that is all of them).
"""

from __future__ import annotations

import base64
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Flask, Response, abort, jsonify, redirect, render_template, request

from ..config import ROOT
from .catalogue import SimAlbum, SimArtist, SimTrack
from .export import export_zip
from .listening import SimPlay
from .world import APP_ACCOUNT, SPOTIFY_SCOPES, FaultRule, SimConfig, World, iso_ms

BATCH_LIMITS = {"tracks": 50, "albums": 20, "artists": 50}


def create_simulator(world: World) -> Flask:
    sim = Flask("audiospective.simulator", template_folder=str(ROOT / "templates"), static_folder=None)
    sim.config["WORLD"] = world

    def api_error(status: int, message: str, headers: dict | None = None) -> Response:
        response = jsonify({"error": {"status": status, "message": message}})
        response.status_code = status
        for k, v in (headers or {}).items():
            response.headers[k] = v
        return response

    def oauth_error(status: int, error: str, description: str) -> Response:
        response = jsonify({"error": error, "error_description": description})
        response.status_code = status
        return response

    def base_url() -> str:
        return request.host_url.rstrip("/")

    def latency() -> None:
        if world.config.latency_ms:
            time.sleep(world.config.latency_ms / 1000)

    def apply_fault(account_key: str | None, endpoint: str) -> Response | None:
        rule = world.fault_for(account_key, endpoint)
        if rule is None:
            return None
        if rule.kind == "rate_limit":
            return api_error(429, "API rate limit exceeded", {"Retry-After": str(rule.retry_after)})
        if rule.kind == "server_error":
            return api_error(rule.status, "Service unavailable")
        if rule.kind == "timeout":
            time.sleep(rule.delay_s)
            return api_error(504, "Gateway timeout")
        if rule.kind == "slow":
            time.sleep(rule.delay_s)
            return None
        if rule.kind == "malformed":
            return Response('{"items": [{"track": ', status=200, mimetype="application/json")
        if rule.kind == "unauthorized":
            return api_error(401, "Invalid access token")
        return None

    def authenticate(endpoint: str, scope_needed: str | None = None, *, user_token: bool = True):
        """(account, None) or (None, error response), applying faults first."""
        latency()
        world.count(f"api:{endpoint}")
        world.log_request(endpoint)
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return None, api_error(401, "No token provided")
        account, error, scope = world.account_for_access_token(header[7:])
        if account is None:
            return None, api_error(401, error or "Invalid access token")
        if user_token and account is APP_ACCOUNT:
            return None, api_error(401, "This endpoint needs a user's access token")
        world.count(f"api:{endpoint}:{account.key}")
        fault = apply_fault(account.key, endpoint)
        if fault is not None:
            return None, fault
        if account is not APP_ACCOUNT and not account.allow_listed:
            return None, api_error(403, "User not registered in the Developer Dashboard")
        if scope_needed and scope_needed not in scope.split():
            return None, api_error(403, "Insufficient client scope")
        return account, None

    # --- accounts service ----------------------------------------------------------------

    @sim.get("/authorize")
    def authorize():
        params = request.args
        problem = None
        if params.get("client_id") != world.config.client_id:
            problem = "INVALID_CLIENT: Invalid client"
        elif params.get("response_type") != "code":
            problem = "unsupported_response_type: response_type must be code"
        elif urlsplit(params.get("redirect_uri", "")).scheme not in ("http", "https"):
            problem = "INVALID_CLIENT: Invalid redirect URI"
        else:
            unknown = set(params.get("scope", "").split()) - SPOTIFY_SCOPES
            if unknown:
                problem = f"invalid_scope: {', '.join(sorted(unknown))}"
        if problem:
            return render_template("simulator/error.html", message=problem), 400
        return render_template(
            "simulator/authorize.html",
            accounts=list(world.accounts.values()),
            params=params,
            scopes=params.get("scope", "").split(),
        )

    @sim.post("/authorize")
    def authorize_decision():
        form = request.form
        redirect_uri = form.get("redirect_uri", "")
        if urlsplit(redirect_uri).scheme not in ("http", "https") or form.get("client_id") != world.config.client_id:
            return render_template("simulator/error.html", message="INVALID_CLIENT: Invalid redirect URI"), 400
        query: dict[str, str] = {}
        if form.get("decision") != "accept":
            query["error"] = "access_denied"
        else:
            account = world.account(form.get("account", ""))
            if account is None:
                return render_template("simulator/error.html", message="Choose an account to continue."), 400
            query["code"] = world.issue_code(account, redirect_uri, form.get("scope", ""))
        if form.get("state"):
            query["state"] = form["state"]
        separator = "&" if "?" in redirect_uri else "?"
        return redirect(f"{redirect_uri}{separator}{urlencode(query)}")

    @sim.post("/api/token")
    def token():
        latency()
        world.count("token")
        client_id, client_secret = _client_credentials()
        if client_id != world.config.client_id or client_secret != world.config.client_secret:
            return oauth_error(401, "invalid_client", "Invalid client")
        grant_type = request.form.get("grant_type")
        if grant_type == "authorization_code":
            world.count("token:authorization_code")
            body, error = world.redeem_code(request.form.get("code", ""), request.form.get("redirect_uri", ""))
        elif grant_type == "client_credentials":
            world.count("token:client_credentials")
            body, error = world.app_token(), None
        elif grant_type == "refresh_token":
            world.count("token:refresh")
            fault = apply_fault(None, "token")
            if fault is not None:
                return fault
            body, error = world.refresh(request.form.get("refresh_token", ""))
        else:
            return oauth_error(400, "unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
        if error:
            return oauth_error(400, "invalid_grant", error)
        response = jsonify(body)
        response.headers["Cache-Control"] = "no-store"
        return response

    # --- Web API -------------------------------------------------------------------------

    @sim.get("/v1/me")
    def me():
        account, error = authenticate("me")
        if error:
            return error
        body: dict[str, Any] = {
            "id": account.id,
            "display_name": account.display_name,
            "type": "user",
            "uri": f"spotify:user:{account.id}",
            "href": f"{base_url()}/v1/users/{account.id}",
            "external_urls": {"spotify": f"https://open.spotify.com/user/{account.id}"},
            "images": [],
        }
        if account.account_id:
            body["account_id"] = account.account_id
        return jsonify(body)

    @sim.get("/v1/me/player/recently-played")
    def recently_played():
        account, error = authenticate("recently_played", "user-read-recently-played")
        if error:
            return error
        args = request.args
        try:
            limit = int(args.get("limit", 20))
            after = int(args["after"]) if "after" in args else None
            before = int(args["before"]) if "before" in args else None
        except ValueError:
            return api_error(400, "Invalid limit, after or before")
        if not 1 <= limit <= 50:
            return api_error(400, "Invalid limit")
        if after is not None and before is not None:
            return api_error(400, "Only one of after and before may be given")
        page = world.recently_played(account, world.clock.now_ms(), limit=limit, after=after, before=before)
        url = f"{base_url()}/v1/me/player/recently-played"
        body = {
            "items": [_play_json(world, p, base_url()) for p in page],
            "next": f"{url}?{urlencode({'before': page[-1].played_at_ms, 'limit': limit})}"
            if len(page) == limit else None,
            "cursors": {"after": str(page[0].played_at_ms), "before": str(page[-1].played_at_ms)} if page else None,
            "limit": limit,
            "href": request.url,
        }
        return jsonify(body)

    def catalogue_single(kind: str, spotify_id: str):
        account, error = authenticate(f"{kind}_single", user_token=False)
        if error:
            return error
        index = world.catalogue.lookup(kind, spotify_id)
        if index is None:
            return api_error(404 if len(spotify_id) == 22 else 400, "Non existing id" if len(spotify_id) == 22 else "invalid id")
        return jsonify(_catalogue_json(world, kind, index, base_url()))

    def catalogue_batch(kind: str):
        account, error = authenticate(f"{kind}_batch", user_token=False)
        if error:
            return error
        if not world.config.batch_endpoints:
            return api_error(403, "Forbidden")
        ids = [i for i in request.args.get("ids", "").split(",") if i]
        if not ids:
            return api_error(400, "invalid id")
        if len(ids) > BATCH_LIMITS[kind]:
            return api_error(400, "Too many ids requested")
        items = []
        for spotify_id in ids:
            index = world.catalogue.lookup(kind, spotify_id)
            items.append(None if index is None else _catalogue_json(world, kind, index, base_url()))
        return jsonify({kind: items})

    for kind in ("tracks", "albums", "artists"):
        sim.add_url_rule(f"/v1/{kind}/<spotify_id>", f"{kind}_single",
                         lambda spotify_id, kind=kind: catalogue_single(kind, spotify_id))
        sim.add_url_rule(f"/v1/{kind}", f"{kind}_batch", lambda kind=kind: catalogue_batch(kind))

    @sim.get("/_sim/cover/<kind>/<spotify_id>.svg")
    def cover(kind: str, spotify_id: str):
        """Generated cover art, so demo pages have pictures without the internet."""
        hue = int.from_bytes(spotify_id.encode()[:4], "big") % 360
        initials = "".join(w[0] for w in _name_of(world, kind, spotify_id).split()[:2]).upper() or "?"
        svg = render_template("simulator/cover.svg", hue=hue, hue2=(hue + 50) % 360, initials=initials,
                              round=kind == "artist")
        return Response(svg, mimetype="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})

    # --- control API (/_sim) -------------------------------------------------------------

    @sim.get("/")
    def index():
        return jsonify({
            "simulator": "Audiospective's Spotify simulator",
            "seed": world.seed,
            "clock": world.clock.describe(),
            "accounts": [a.public() for a in world.accounts.values()],
            "config": _config_json(world.config),
        })

    @sim.get("/favicon.ico")
    def favicon():
        return Response(status=204)

    @sim.get("/_sim/accounts")
    def accounts():
        return jsonify([a.public() for a in world.accounts.values()])

    @sim.get("/_sim/clock")
    def clock_get():
        return jsonify(world.clock.describe())

    @sim.post("/_sim/clock")
    def clock_set():
        data = _json_body()
        if "advance_ms" in data:
            world.clock.advance(int(data["advance_ms"]))
        elif "now_ms" in data:
            world.clock.set(int(data["now_ms"]), frozen=bool(data.get("frozen", False)))
        elif data.get("reset"):
            world.clock.reset()
        else:
            abort(400, "give advance_ms, now_ms (+ frozen) or reset")
        return jsonify(world.clock.describe())

    @sim.get("/_sim/config")
    def config_get():
        return jsonify(_config_json(world.config))

    @sim.post("/_sim/config")
    def config_set():
        data = _json_body()
        unknown = set(data) - set(SimConfig.UPDATABLE)
        if unknown:
            abort(400, f"unknown settings: {', '.join(sorted(unknown))}")
        for key, value in data.items():
            setattr(world.config, key, type(getattr(world.config, key))(value))
        return jsonify(_config_json(world.config))

    @sim.get("/_sim/faults")
    def faults_get():
        return jsonify(world.faults_json())

    @sim.post("/_sim/faults")
    def faults_set():
        """Body: {"account": KEY or null (everyone), "rules": [{"kind": ..., ...}]}; rules replace that scope's."""
        data = _json_body()
        try:
            rules = [FaultRule.from_json(r) for r in data.get("rules", [])]
        except (TypeError, ValueError) as exc:
            abort(400, str(exc))
        account = data.get("account")
        if account is not None and world.account(account) is None:
            abort(404, f"no account {account!r}")
        world.set_faults(world.account(account).key if account else None, rules)
        return jsonify(world.faults_json())

    @sim.delete("/_sim/faults")
    def faults_clear():
        world.clear_faults()
        return jsonify({})

    @sim.post("/_sim/accounts/<key>/revoke")
    def revoke(key: str):
        account = world.account(key) or abort(404, f"no account {key!r}")
        return jsonify({"revoked": world.revoke(account.key)})

    @sim.get("/_sim/ground-truth/<key>")
    def ground_truth(key: str):
        """Every play generated for an account in [from_ms, to_ms), with `visible` marking
        the ones Spotify would report. Defaults to the last 24 hours."""
        account = world.account(key) or abort(404, f"no account {key!r}")
        now = world.clock.now_ms()
        try:
            to_ms = int(request.args.get("to_ms", now))
            from_ms = int(request.args.get("from_ms", to_ms - 86_400_000))
        except ValueError:
            abort(400, "from_ms and to_ms are Unix milliseconds")
        if to_ms - from_ms > 400 * 86_400_000:
            abort(400, "at most 400 days at a time")
        plays = world.plays_between(account, from_ms, to_ms)
        return jsonify({
            "account": account.public(),
            "from_ms": from_ms,
            "to_ms": to_ms,
            "plays": [
                {"played_at": iso_ms(p.played_at_ms), "played_at_ms": p.played_at_ms,
                 "track_id": world.catalogue.tracks[p.track_index].id, "ms_played": p.ms_played,
                 "visible": p.visible}
                for p in plays
            ],
        })

    @sim.post("/_sim/accounts/<key>/grant")
    def grant(key: str):
        """Tokens for an account without the consent round trip (tests, benchmarks)."""
        account = world.account(key) or abort(404, f"no account {key!r}")
        return jsonify(world.grant_for(account))

    @sim.get("/_sim/export/<key>.zip")
    def export(key: str):
        """A Spotify data export for the account (`kind`: extended or account), covering
        [from_ms, to_ms) (default: the last 30 days)."""
        account = world.account(key) or abort(404, f"no account {key!r}")
        kind = request.args.get("kind", "extended")
        if kind not in ("extended", "account"):
            abort(400, "kind is extended or account")
        try:
            to_ms = int(request.args.get("to_ms", world.clock.now_ms()))
            from_ms = int(request.args.get("from_ms", to_ms - 30 * 86_400_000))
        except ValueError:
            abort(400, "from_ms and to_ms are Unix milliseconds")
        if to_ms - from_ms > 400 * 86_400_000:
            abort(400, "at most 400 days at a time")
        name = "my_spotify_data.zip"
        return Response(export_zip(world, account, from_ms, to_ms, kind), mimetype="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @sim.get("/_sim/stats")
    def stats():
        return jsonify(dict(world.stats))

    @sim.get("/_sim/requests")
    def requests_log():
        """API requests received since `since` (Unix seconds, wall clock): [[time, endpoint], ...]."""
        since = float(request.args.get("since", 0))
        return jsonify([[t, endpoint] for t, endpoint in list(world.requests) if t >= since])

    @sim.post("/_sim/stats/reset")
    def stats_reset():
        world.stats.clear()
        world.requests.clear()
        return jsonify({})

    @sim.errorhandler(400)
    @sim.errorhandler(404)
    def control_error(exc):
        return jsonify({"error": {"status": exc.code, "message": exc.description}}), exc.code

    return sim


def _client_credentials() -> tuple[str | None, str | None]:
    """Basic auth (what Spotify documents), or client_id/client_secret in the form."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Basic "):
        try:
            client_id, _, client_secret = base64.b64decode(header[6:]).decode().partition(":")
            return client_id, client_secret
        except (ValueError, UnicodeDecodeError):
            return None, None
    return request.form.get("client_id"), request.form.get("client_secret")


def _json_body() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        abort(400, "expected a JSON object body")
    return data


def _config_json(config: SimConfig) -> dict:
    return {k: getattr(config, k) for k in SimConfig.UPDATABLE}


def _name_of(world: World, kind: str, spotify_id: str) -> str:
    index = world.catalogue.lookup(kind + "s", spotify_id)
    if index is None:
        return "?"
    return getattr(world.catalogue, kind + "s")[index].name


def _images(base: str, kind: str, spotify_id: str) -> list[dict]:
    url = f"{base}/_sim/cover/{kind}/{spotify_id}.svg"
    return [{"url": url, "width": size, "height": size} for size in (640, 300, 64)]


def _ref(base: str, kind: str, spotify_id: str, **fields) -> dict:
    """What every Spotify object carries: id, type, uri, href and the link back to Spotify."""
    return {
        "id": spotify_id,
        **fields,
        "type": kind,
        "uri": f"spotify:{kind}:{spotify_id}",
        "href": f"{base}/v1/{kind}s/{spotify_id}",
        "external_urls": {"spotify": f"https://open.spotify.com/{kind}/{spotify_id}"},
    }


def _artist_simple(world: World, index: int, base: str) -> dict:
    artist: SimArtist = world.catalogue.artists[index]
    return _ref(base, "artist", artist.id, name=artist.name)


def _album_simple(world: World, index: int, base: str) -> dict:
    album: SimAlbum = world.catalogue.albums[index]
    return _ref(
        base, "album", album.id,
        name=album.name,
        album_type=album.album_type,
        release_date=album.release_date,
        release_date_precision=album.release_date_precision,
        total_tracks=len(album.track_indexes),
        images=_images(base, "album", album.id),
        artists=[_artist_simple(world, album.artist_index, base)],
    )


def _track_json(world: World, index: int, base: str) -> dict:
    track: SimTrack = world.catalogue.tracks[index]
    body = _ref(
        base, "track", track.id,
        name=track.name,
        duration_ms=track.duration_ms,
        explicit=track.explicit,
        external_ids={"isrc": track.isrc},
        is_local=False,
        track_number=track.track_number,
        disc_number=1,
        album=_album_simple(world, track.album_index, base),
        artists=[_artist_simple(world, a, base) for a in track.artist_indexes],
    )
    if not world.config.dev_mode_fields:
        body["popularity"] = max(0, 100 - index % 100)
    return body


def _catalogue_json(world: World, kind: str, index: int, base: str) -> dict:
    if kind == "tracks":
        return _track_json(world, index, base)
    if kind == "albums":
        body = _album_simple(world, index, base)
        album = world.catalogue.albums[index]
        body["tracks"] = {"items": [_track_json(world, t, base) | {"album": None} for t in album.track_indexes],
                          "total": len(album.track_indexes)}
        if not world.config.dev_mode_fields:
            body["label"] = "Simulated Records"
        return body
    artist = world.catalogue.artists[index]
    body = _artist_simple(world, index, base) | {"images": _images(base, "artist", artist.id)}
    body["genres"] = [] if world.config.dev_mode_fields else list(artist.genres)
    if not world.config.dev_mode_fields:
        body["followers"] = {"href": None, "total": 1000 + index * 37}
        body["popularity"] = max(0, 90 - index % 90)
    return body


def _play_json(world: World, play: SimPlay, base: str) -> dict:
    track = world.catalogue.tracks[play.track_index]
    if play.context == "album":
        context = _ref(base, "album", world.catalogue.albums[track.album_index].id)
        del context["id"]  # a context is {type, uri, href, external_urls}
    else:
        context = None
    return {"track": _track_json(world, play.track_index, base), "played_at": iso_ms(play.played_at_ms),
            "context": context}
