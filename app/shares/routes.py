"""/shares: the owner's shares and the form that makes one; /s/<token>: the public page."""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..db import get_session
from ..errors import problem
from ..stats import panels as stats_panels
from ..stats.periods import PERIODS, PeriodError, resolve
from ..time import now, zone
from .service import (
    DEFAULT_PANELS,
    EXPIRY_DAYS,
    ShareError,
    ShareGone,
    create_share,
    delete_share,
    is_live,
    list_shares,
    open_share,
    panels_of,
    period_of,
    revoke_share,
)

bp = Blueprint("shares", __name__)


@bp.get("/shares")
@login_required
def index():
    return _page()


def _page(error: str | None = None, status: int = 200):
    shares = list_shares(get_session(), current_user.id)
    return render_template("shares/index.html", shares=shares, error=error, form=request.form, now=now(),
                           periods={k: v for k, v in PERIODS.items() if k != "today"}, titles=stats_panels.TITLES,
                           default_panels=DEFAULT_PANELS, expiry_days=EXPIRY_DAYS, is_live=is_live,
                           period_of=period_of), status


@bp.post("/shares")
@login_required
def create():
    form = request.form
    session = get_session()
    try:
        period = resolve(form.get("period"), zone(current_user.timezone), now(), start=form.get("from"),
                         end=form.get("to"))
        share = create_share(session, current_user, period, form.getlist("panels"),
                             rank_by=form.get("rank_by", "plays"), show_name=form.get("show_name") == "on",
                             expiry=form.get("expiry", "never"), now=now())
    except (ShareError, PeriodError) as exc:
        session.rollback()
        return _page(str(exc), status=400)
    session.commit()
    flash(f"Your share is ready: {url_for('shares.public', token=share.token, _external=True)}", "info")
    return redirect(url_for("shares.index", _anchor=f"share-{share.id}"), code=303)


@bp.post("/shares/<id:share_id>/revoke")
@login_required
def revoke(share_id: int):
    session = get_session()
    if not revoke_share(session, current_user.id, share_id, now=now()):
        abort(404)
    session.commit()
    flash("The link is revoked: it now says the page is gone.", "info")
    return redirect(url_for("shares.index"), code=303)


@bp.post("/shares/<id:share_id>/delete")
@login_required
def delete(share_id: int):
    session = get_session()
    if not delete_share(session, current_user.id, share_id):
        abort(404)
    session.commit()
    flash("The share is deleted.", "info")
    return redirect(url_for("shares.index"), code=303)


@bp.get("/s/<token>")
def public(token: str):
    """No sign-in: the token is the permission, and it opens this snapshot only."""
    session = get_session()
    try:
        share = open_share(session, token, now=now())
    except ShareGone:
        session.commit()
        response = problem("This share has ended", "Its owner revoked the link, or it has expired. Ask them for a "
                           "new one.", status=410)
        return _private(response)
    except LookupError:
        abort(404)
    session.commit()
    g.display_zone = zone(share.timezone)  # times on the page are in the owner's zone, as they saw them
    period = period_of(share)
    rendered = [stats_panels.render(name, value, period, share.rank_by, frozen=True)
                for name, value in panels_of(share)]
    return _private(render_template("shares/public.html", share=share, period=period, rendered=rendered))


def _private(response):
    """Share pages stay out of search engines and caches, and never pass their URL on."""
    body, status = response if isinstance(response, tuple) else (response, 200)
    return body, status, {"X-Robots-Tag": "noindex, nofollow", "Referrer-Policy": "no-referrer",
                          "Cache-Control": "no-store"}
