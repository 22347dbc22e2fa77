"""The waitlist pages (no sign-in needed) and the invitation link."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask import session as flask_session

from ..email.address import AddressError
from ..db import get_session
from ..email.routes import remember_for_visitor
from ..errors import problem, too_many
from ..limits import Limit, Limited, hit
from ..signed import LinkError
from ..time import now
from . import seats, waitlist

bp = Blueprint("membership", __name__)

# Sign-ups: per address (each sends a mail there) and per client address.
JOIN_PER_ADDRESS = Limit("waitlist-address", 3, timedelta(hours=24))
JOIN_PER_IP = Limit("waitlist-ip", 20, timedelta(hours=1))
INVITE_SESSION_KEY = "invite"


def _settings():
    return current_app.config["SETTINGS"]


@bp.get("/waitlist")
def index():
    session = get_session()
    return render_template("membership/waitlist.html", seats_left=seats.seats_left(session, _settings().founding_member_cap, now()),
                           waiting=waitlist.waiting(session), error=None, email="")


@bp.post("/waitlist")
def join():
    session, moment = get_session(), now()
    address = (request.form.get("email") or "").strip()
    try:
        hit(session, JOIN_PER_IP, request.remote_addr or "unknown", now=moment)
        if address:
            hit(session, JOIN_PER_ADDRESS, address.lower()[:254], now=moment)
        _, mail = waitlist.join(session, address, secret=_settings().secret_key, now=moment)
    except Limited as exc:
        session.rollback()
        return too_many(exc.retry_after_s, "Too many waitlist sign-ups came from here or for this address.")
    except AddressError as exc:
        session.rollback()
        return render_template("membership/waitlist.html", seats_left=seats.seats_left(
            session, _settings().founding_member_cap, now()), waiting=waitlist.waiting(session), error=str(exc),
            email=address[:254]), 400
    session.commit()
    remember_for_visitor(mail)
    # The same page whether the address is new, waiting or confirmed: it tells nobody who is listed.
    return redirect(url_for("membership.joined"), code=303)


@bp.get("/waitlist/joined")
def joined():
    return render_template("membership/joined.html")


@bp.get("/waitlist/confirm")
def confirm():
    session = get_session()
    try:
        entry = waitlist.confirm(session, request.args.get("t", ""), secret=_settings().secret_key, now=now())
    except LinkError as exc:
        return _link_problem(exc)
    session.commit()
    return render_template("membership/position.html", entry=entry, position=waitlist.position(session, entry),
                           leave=waitlist.leave_link(entry, secret=_settings().secret_key, now=now()))


@bp.route("/waitlist/leave", methods=["GET", "POST"])
def leave():
    """The link in every waitlist mail: a page that asks, then the removal (a POST, so a
    mail scanner following links removes nobody)."""
    session = get_session()
    token = (request.form if request.method == "POST" else request.args).get("t", "")
    try:
        entry = waitlist.entry_for_leave(session, token, secret=_settings().secret_key, now=now())
    except LinkError as exc:
        return _link_problem(exc, gone="This address is not on the waitlist (any more).")
    if request.method == "GET":
        return render_template("membership/leave.html", entry=entry, token=token)
    waitlist.remove(session, entry.id)
    session.commit()
    return render_template("membership/left.html")


@bp.get("/invite")
def accept_invite():
    """The invitation's link: remembered in this browser, then on to sign in with Spotify."""
    session = get_session()
    try:
        entry = waitlist.check_invite(session, request.args.get("t", ""), secret=_settings().secret_key, now=now())
    except waitlist.InviteUnusable as exc:
        messages = {"used": "This invitation has been used to create an account already; it works once.",
                    "expired": "This invitation has expired, and the seat went to the next person in line. "
                               "Join the waitlist again to get back in line.",
                    "replaced": "A newer invitation was sent to the same address; use the link in that one."}
        return problem("This invitation cannot be used", messages[exc.reason], status=410,
                       action=("The waitlist", url_for("membership.index")))
    except LinkError as exc:
        return _link_problem(exc)
    flask_session[INVITE_SESSION_KEY] = entry.id
    return render_template("membership/invited.html", entry=entry)


def invite_in_session() -> int | None:
    value = flask_session.get(INVITE_SESSION_KEY)
    return value if isinstance(value, int) else None


def _link_problem(exc: LinkError, gone: str | None = None):
    if exc.expired:
        return problem("This link cannot be used any more", gone or "It has expired, or what it was for is gone. "
                       "Sign up on the waitlist again for a new one.", status=410,
                       action=("The waitlist", url_for("membership.index")))
    return problem("This link is damaged", "It is incomplete or was changed. Copy the whole link from the email.",
                   status=400, action=("The waitlist", url_for("membership.index")))
