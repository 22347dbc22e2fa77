"""What every template can use, registered app-wide in create_app (not by a blueprint,
so a page of any area prints times and durations the same way):

    local      a UTC instant in the signed-in user's time zone (or in `g.display_zone`,
               set by pages shown in someone else's zone: a share page, a report)
    duration   milliseconds as "3 h 12 min"
    browser    a User-Agent as a person would say it ("Firefox on Linux")
    spotify_url, entity_url   links to an item on Spotify and to its page here
    demo_mode  whether this instance talks to the simulator (the banner)

Filters and globals, not a context processor, because imported macros (_chart.html) see
globals only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Flask, g, url_for
from flask_login import current_user

from .time import zone


def local(moment: datetime | str | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """`moment` may be an ISO 8601 string (as import reports store them)."""
    if not moment:
        return ""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    tz = g.get("display_zone") or zone(current_user.timezone if current_user.is_authenticated else None)
    return moment.astimezone(tz).strftime(fmt)


def duration(ms: int | None) -> str:
    minutes = round((ms or 0) / 60_000)
    return f"{minutes // 60:,} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


_BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"),
             ("Safari/", "Safari"))
_SYSTEMS = (("Android", "Android"), ("iPhone", "iPhone"), ("iPad", "iPad"), ("Windows", "Windows"),
            ("Mac OS X", "macOS"), ("CrOS", "ChromeOS"), ("Linux", "Linux"))


def browser(user_agent: str | None) -> str:
    if not user_agent:
        return "An unknown browser"
    name = next((n for marker, n in _BROWSERS if marker in user_agent), None)
    system = next((s for marker, s in _SYSTEMS if marker in user_agent), None)
    if name is None:  # a script or an app: its own first word says what it is
        return user_agent.split(" ", 1)[0][:40]
    return f"{name} on {system}" if system else name


def spotify_url(kind: str, spotify_id: str | None) -> str | None:
    """The item on Spotify (their attribution rule: shown metadata links back)."""
    return f"https://open.spotify.com/{kind.rstrip('s')}/{spotify_id}" if spotify_id else None


def entity_url(kind: str, entity_id: int | None) -> str | None:
    return url_for("stats.entity", kind=kind.rstrip("s"), entity_id=entity_id) if entity_id else None


def init_app(app: Flask, *, demo_mode: bool) -> None:
    app.add_template_filter(local)
    app.add_template_filter(duration)
    app.add_template_filter(browser)
    globals_: dict[str, Any] = {"spotify_url": spotify_url, "entity_url": entity_url, "demo_mode": demo_mode}
    app.jinja_env.globals.update(globals_)
