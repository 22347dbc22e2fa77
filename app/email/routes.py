"""/outbox: the signed-in person's mail, as it was sent or, with no SMTP server configured
(local and demo runs), as it would have been: a newcomer sees exactly what mail says.

In demo mode a visitor who is not signed in (someone joining the waitlist) sees the mail
written for this browser's requests (`remember_for_visitor`), and only that."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, Response, abort, current_app, render_template
from flask import session as flask_session
from flask_login import current_user

from ..db import get_session
from ..models import OutboxMessage
from .outbox import messages_for

bp = Blueprint("mail", __name__, url_prefix="/outbox")
# The HTML part is our template's output, but it is shown as a document of its own with
# nothing allowed beyond inline styles: mail HTML never runs in the app's pages.
HTML_PART_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; sandbox"


VISITOR_KEY = "visitor_mail"


def remember_for_visitor(message_id: int | None) -> None:
    """Demo mode: let this browser read a message written for it without an account."""
    if message_id is not None and current_app.config["SETTINGS"].demo_mode:
        flask_session[VISITOR_KEY] = (_visitor_ids() + [message_id])[-20:]


def _visitor_ids() -> list[int]:
    ids = flask_session.get(VISITOR_KEY) if current_app.config["SETTINGS"].demo_mode else None
    return [i for i in ids if isinstance(i, int)] if isinstance(ids, list) else []


def _readable() -> None:
    if not current_user.is_authenticated and not _visitor_ids():
        abort(current_app.login_manager.unauthorized())


@bp.get("")
def outbox():
    _readable()
    session = get_session()
    messages = messages_for(session, current_user.id) if current_user.is_authenticated else []
    if _visitor_ids():
        messages += session.scalars(sa.select(OutboxMessage).where(OutboxMessage.id.in_(_visitor_ids()))
                                    .order_by(OutboxMessage.created_at.desc())).all()
    return render_template("email/outbox.html", messages=messages,
                           smtp=current_app.config["SETTINGS"].smtp is not None)


@bp.get("/<id:message_id>")
def message(message_id: int):
    _readable()
    return render_template("email/message.html", message=_own_message(message_id),
                           smtp=current_app.config["SETTINGS"].smtp is not None)


@bp.get("/<id:message_id>/html")
def html_part(message_id: int):
    _readable()
    response = Response(_own_message(message_id).body_html, content_type="text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = HTML_PART_CSP
    return response


def _own_message(message_id: int) -> OutboxMessage:
    record = get_session().get(OutboxMessage, message_id)
    mine = record is not None and current_user.is_authenticated and record.user_id == current_user.id
    if record is None or not (mine or message_id in _visitor_ids()):
        abort(404)
    return record
