"""/alerts/off: the link in every alert mail (and its List-Unsubscribe header)."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request, url_for

from ..db import get_session
from ..errors import problem
from ..models import User
from ..signed import LinkError, verify
from ..time import now
from .service import UNSUBSCRIBE, set_alerts

bp = Blueprint("alerts", __name__, url_prefix="/alerts")


@bp.route("/off", methods=["GET", "POST"])
def turn_off():
    """A page that asks, then the change (a POST: a mail scanner following links changes
    nothing). Works signed in or not: the signature is the proof."""
    session = get_session()
    token = (request.form if request.method == "POST" else request.args).get("t", "")
    try:
        payload = verify(current_app.config["SETTINGS"].secret_key, UNSUBSCRIBE, token, now())
    except LinkError:
        return problem("This link is damaged", "Copy the whole link from the email, or turn alerts off in Settings.",
                       status=400, action=("Settings", url_for("account.settings")))
    user = session.get(User, payload.get("u")) if isinstance(payload.get("u"), int) else None
    if user is None:
        return problem("This account is gone", "There is nothing left to send alerts about.", status=410)
    if request.method == "GET":
        return render_template("alerts/off.html", token=token, email=user.email)
    set_alerts(session, user, False)
    session.commit()
    return render_template("alerts/off.html", done=True, email=user.email)
