"""The Web API (api.spotify.com) subset the product uses: /v1/me, recently-played, and the
catalogue (single items and batches), plus generated cover art standing in for Spotify's
image CDN, in Spotify's wire format.

Recently-played: `limit` 1..50, `after` or `before` (Unix ms, never both), newest first,
only the last 50 reported plays exist; `cursors` is null on an empty page; `next` (a
`before` URL) is given on a full page, and following it after a page of 50 yields
nothing. With `after`, the page is the newest `limit` plays after the cursor (at limit
50 that is all of them).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, jsonify, render_template, request

from .catalogue import SimAlbum, SimArtist, SimTrack
from .listening import SimPlay
from .serving import api_error, apply_fault, base_url, latency, world
from .world import APP_ACCOUNT, World, iso_ms

bp = Blueprint("webapi", __name__)

BATCH_LIMITS = {"tracks": 50, "albums": 20, "artists": 50}


def authenticate(endpoint: str, scope_needed: str | None = None, *, user_token: bool = True):
    """(account, None) or (None, error response), applying faults first."""
    latency()
    sim = world()
    sim.count(f"api:{endpoint}")
    sim.log_request(endpoint)
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None, api_error(401, "No token provided")
    account, error, scope = sim.account_for_access_token(header[7:])
    if account is None:
        return None, api_error(401, error or "Invalid access token")
    if user_token and account is APP_ACCOUNT:
        return None, api_error(401, "This endpoint needs a user's access token")
    sim.count(f"api:{endpoint}:{account.key}")
    fault = apply_fault(account.key, endpoint)
    if fault is not None:
        return None, fault
    if account is not APP_ACCOUNT and not account.allow_listed:
        return None, api_error(403, "User not registered in the Developer Dashboard")
    if scope_needed and scope_needed not in scope.split():
        return None, api_error(403, "Insufficient client scope")
    return account, None


@bp.get("/v1/me")
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


@bp.get("/v1/me/player/recently-played")
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
    sim = world()
    page = sim.recently_played(account, sim.clock.now_ms(), limit=limit, after=after, before=before)
    url = f"{base_url()}/v1/me/player/recently-played"
    body = {
        "items": [_play_json(sim, p, base_url()) for p in page],
        "next": f"{url}?{urlencode({'before': page[-1].played_at_ms, 'limit': limit})}"
        if len(page) == limit else None,
        "cursors": {"after": str(page[0].played_at_ms), "before": str(page[-1].played_at_ms)} if page else None,
        "limit": limit,
        "href": request.url,
    }
    return jsonify(body)


@bp.get("/v1/<any(tracks, albums, artists):kind>/<spotify_id>")
def catalogue_single(kind: str, spotify_id: str):
    account, error = authenticate(f"{kind}_single", user_token=False)
    if error:
        return error
    index = world().catalogue.lookup(kind, spotify_id)
    if index is None:
        return api_error(404 if len(spotify_id) == 22 else 400, "Non existing id" if len(spotify_id) == 22 else "invalid id")
    return jsonify(_catalogue_json(world(), kind, index, base_url()))


@bp.get("/v1/<any(tracks, albums, artists):kind>")
def catalogue_batch(kind: str):
    account, error = authenticate(f"{kind}_batch", user_token=False)
    if error:
        return error
    sim = world()
    if not sim.config.batch_endpoints:
        return api_error(403, "Forbidden")
    ids = [i for i in request.args.get("ids", "").split(",") if i]
    if not ids:
        return api_error(400, "invalid id")
    if len(ids) > BATCH_LIMITS[kind]:
        return api_error(400, "Too many ids requested")
    items = []
    for spotify_id in ids:
        index = sim.catalogue.lookup(kind, spotify_id)
        items.append(None if index is None else _catalogue_json(sim, kind, index, base_url()))
    return jsonify({kind: items})


@bp.get("/_sim/cover/<kind>/<spotify_id>.svg")
def cover(kind: str, spotify_id: str):
    """Generated cover art, so demo pages have pictures without the internet."""
    hue = int.from_bytes(spotify_id.encode()[:4], "big") % 360
    initials = "".join(w[0] for w in _name_of(world(), kind, spotify_id).split()[:2]).upper() or "?"
    svg = render_template("simulator/cover.svg", hue=hue, hue2=(hue + 50) % 360, initials=initials,
                          round=kind == "artist")
    return Response(svg, mimetype="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})


# --- Spotify's JSON objects ------------------------------------------------------------------


def _name_of(sim: World, kind: str, spotify_id: str) -> str:
    index = sim.catalogue.lookup(kind + "s", spotify_id)
    if index is None:
        return "?"
    return getattr(sim.catalogue, kind + "s")[index].name


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


def _artist_simple(sim: World, index: int, base: str) -> dict:
    artist: SimArtist = sim.catalogue.artists[index]
    return _ref(base, "artist", artist.id, name=artist.name)


def _album_simple(sim: World, index: int, base: str) -> dict:
    album: SimAlbum = sim.catalogue.albums[index]
    return _ref(
        base, "album", album.id,
        name=album.name,
        album_type=album.album_type,
        release_date=album.release_date,
        release_date_precision=album.release_date_precision,
        total_tracks=len(album.track_indexes),
        images=_images(base, "album", album.id),
        artists=[_artist_simple(sim, album.artist_index, base)],
    )


def _track_json(sim: World, index: int, base: str) -> dict:
    track: SimTrack = sim.catalogue.tracks[index]
    body = _ref(
        base, "track", track.id,
        name=track.name,
        duration_ms=track.duration_ms,
        explicit=track.explicit,
        external_ids={"isrc": track.isrc},
        is_local=False,
        track_number=track.track_number,
        disc_number=1,
        album=_album_simple(sim, track.album_index, base),
        artists=[_artist_simple(sim, a, base) for a in track.artist_indexes],
    )
    if not sim.config.dev_mode_fields:
        body["popularity"] = max(0, 100 - index % 100)
    return body


def _catalogue_json(sim: World, kind: str, index: int, base: str) -> dict:
    if kind == "tracks":
        return _track_json(sim, index, base)
    if kind == "albums":
        body = _album_simple(sim, index, base)
        album = sim.catalogue.albums[index]
        body["tracks"] = {"items": [_track_json(sim, t, base) | {"album": None} for t in album.track_indexes],
                          "total": len(album.track_indexes)}
        if not sim.config.dev_mode_fields:
            body["label"] = "Simulated Records"
        return body
    artist = sim.catalogue.artists[index]
    body = _artist_simple(sim, index, base) | {"images": _images(base, "artist", artist.id)}
    body["genres"] = [] if sim.config.dev_mode_fields else list(artist.genres)
    if not sim.config.dev_mode_fields:
        body["followers"] = {"href": None, "total": 1000 + index * 37}
        body["popularity"] = max(0, 90 - index % 90)
    return body


def _play_json(sim: World, play: SimPlay, base: str) -> dict:
    track = sim.catalogue.tracks[play.track_index]
    if play.context == "album":
        context = _ref(base, "album", sim.catalogue.albums[track.album_index].id)
        del context["id"]  # a context is {type, uri, href, external_urls}
    else:
        context = None
    return {"track": _track_json(sim, play.track_index, base), "played_at": iso_ms(play.played_at_ms),
            "context": context}
