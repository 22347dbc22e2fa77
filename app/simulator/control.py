"""The control API (`/_sim`), which Spotify does not have: for tests, benchmarks and
curious developers to steer the world (clock, configuration, faults, revocations) and to
read what really happened (ground truth, exports, request counts)."""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify, request

from .export import export_zip
from .serving import world
from .world import FaultRule, SimConfig, iso_ms

bp = Blueprint("control", __name__)

MAX_SPAN_MS = 400 * 86_400_000


@bp.get("/")
def index():
    sim = world()
    return jsonify({
        "simulator": "Audiospective's Spotify simulator",
        "seed": sim.seed,
        "clock": sim.clock.describe(),
        "accounts": [a.public() for a in sim.accounts.values()],
        "config": _config_json(sim.config),
    })


@bp.get("/favicon.ico")
def favicon():
    return Response(status=204)


@bp.get("/_sim/accounts")
def accounts():
    return jsonify([a.public() for a in world().accounts.values()])


@bp.get("/_sim/clock")
def clock_get():
    return jsonify(world().clock.describe())


@bp.post("/_sim/clock")
def clock_set():
    data, clock = _json_body(), world().clock
    if "advance_ms" in data:
        clock.advance(int(data["advance_ms"]))
    elif "now_ms" in data:
        clock.set(int(data["now_ms"]), frozen=bool(data.get("frozen", False)))
    elif data.get("reset"):
        clock.reset()
    else:
        abort(400, "give advance_ms, now_ms (+ frozen) or reset")
    return jsonify(clock.describe())


@bp.get("/_sim/config")
def config_get():
    return jsonify(_config_json(world().config))


@bp.post("/_sim/config")
def config_set():
    data, config = _json_body(), world().config
    unknown = set(data) - set(SimConfig.UPDATABLE)
    if unknown:
        abort(400, f"unknown settings: {', '.join(sorted(unknown))}")
    for key, value in data.items():
        setattr(config, key, type(getattr(config, key))(value))
    return jsonify(_config_json(config))


@bp.get("/_sim/faults")
def faults_get():
    return jsonify(world().faults_json())


@bp.post("/_sim/faults")
def faults_set():
    """Body: {"account": KEY or null (everyone), "rules": [{"kind": ..., ...}]}; rules replace that scope's."""
    data, sim = _json_body(), world()
    try:
        rules = [FaultRule.from_json(r) for r in data.get("rules", [])]
    except (TypeError, ValueError) as exc:
        abort(400, str(exc))
    account = data.get("account")
    if account is not None and sim.account(account) is None:
        abort(404, f"no account {account!r}")
    sim.set_faults(sim.account(account).key if account else None, rules)
    return jsonify(sim.faults_json())


@bp.delete("/_sim/faults")
def faults_clear():
    world().clear_faults()
    return jsonify({})


@bp.post("/_sim/accounts/<key>/revoke")
def revoke(key: str):
    return jsonify({"revoked": world().revoke(_account(key).key)})


@bp.post("/_sim/accounts/<key>/grant")
def grant(key: str):
    """Tokens for an account without the consent round trip (tests, benchmarks)."""
    return jsonify(world().grant_for(_account(key)))


@bp.get("/_sim/ground-truth/<key>")
def ground_truth(key: str):
    """Every play generated for an account in [from_ms, to_ms), with `visible` marking
    the ones Spotify would report. Defaults to the last 24 hours."""
    sim, account = world(), _account(key)
    from_ms, to_ms = _span(default_days=1)
    return jsonify({
        "account": account.public(),
        "from_ms": from_ms,
        "to_ms": to_ms,
        "plays": [
            {"played_at": iso_ms(p.played_at_ms), "played_at_ms": p.played_at_ms,
             "track_id": sim.catalogue.tracks[p.track_index].id, "ms_played": p.ms_played,
             "visible": p.visible}
            for p in sim.plays_between(account, from_ms, to_ms)
        ],
    })


@bp.get("/_sim/export/<key>.zip")
def export(key: str):
    """A Spotify data export for the account (`kind`: extended or account), covering
    [from_ms, to_ms) (default: the last 30 days)."""
    account = _account(key)
    kind = request.args.get("kind", "extended")
    if kind not in ("extended", "account"):
        abort(400, "kind is extended or account")
    from_ms, to_ms = _span(default_days=30)
    return Response(export_zip(world(), account, from_ms, to_ms, kind), mimetype="application/zip",
                    headers={"Content-Disposition": 'attachment; filename="my_spotify_data.zip"'})


@bp.get("/_sim/stats")
def stats():
    return jsonify(dict(world().stats))


@bp.get("/_sim/requests")
def requests_log():
    """API requests received since `since` (Unix seconds, wall clock): [[time, endpoint], ...]."""
    since = float(request.args.get("since", 0))
    return jsonify([[t, endpoint] for t, endpoint in list(world().requests) if t >= since])


@bp.post("/_sim/stats/reset")
def stats_reset():
    sim = world()
    sim.stats.clear()
    sim.requests.clear()
    return jsonify({})


@bp.app_errorhandler(400)
@bp.app_errorhandler(404)
def control_error(exc):
    return jsonify({"error": {"status": exc.code, "message": exc.description}}), exc.code


def _account(key: str):
    return world().account(key) or abort(404, f"no account {key!r}")


def _span(*, default_days: int) -> tuple[int, int]:
    """[from_ms, to_ms) from the query, ending now and lasting `default_days` by default."""
    try:
        to_ms = int(request.args.get("to_ms", world().clock.now_ms()))
        from_ms = int(request.args.get("from_ms", to_ms - default_days * 86_400_000))
    except ValueError:
        abort(400, "from_ms and to_ms are Unix milliseconds")
    if to_ms - from_ms > MAX_SPAN_MS:
        abort(400, "at most 400 days at a time")
    return from_ms, to_ms


def _json_body() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        abort(400, "expected a JSON object body")
    return data


def _config_json(config: SimConfig) -> dict:
    return {k: getattr(config, k) for k in SimConfig.UPDATABLE}
