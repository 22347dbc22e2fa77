"""The signed-in user's home. For now: who they are, the state of their Spotify
connection and of their archive; the archival and stats issues fill it in."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, render_template
from flask_login import current_user, login_required

from .auth.accounts import reauthorise_by
from .db import get_session
from .models import ArchiveState, Play

bp = Blueprint("dashboard", __name__)


@bp.get("/dashboard")
@login_required
def index():
    session = get_session()
    user = current_user
    state = session.get(ArchiveState, user.id)
    plays = session.scalar(sa.select(sa.func.count()).select_from(Play).where(Play.user_id == user.id))
    return render_template(
        "dashboard.html",
        user=user,
        state=state,
        plays=plays,
        reauthorise_by=reauthorise_by(user),
    )
