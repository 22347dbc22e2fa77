"""/admin: users, seats and the waitlist, the job queue, email, app health, the audit
log. 404 for anyone who is not an admin (the area does not exist for them). Every action
is a CSRF-protected POST, recorded in the audit log in its own transaction."""

from __future__ import annotations

import random

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from .. import queue
from ..account.leaving import LeavingError, delete_account, pause_archiving, resume_archiving
from ..account.users import list_users, set_plan, set_role
from ..archival.dispatch import resume_collection
from ..db import get_session
from ..email.address import AddressError
from ..email.outbox import mail_context
from ..membership import seats, waitlist
from ..models import Role, User, UserStatus, WaitlistEntry
from ..security import csrf
from ..time import now
from . import audit, overview

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def admins_only():
    """The area does not exist for anyone else: 404 comes before anything, the CSRF check
    included (it runs here, for admins, instead of app-wide: see security.py)."""
    if not current_user.is_authenticated or current_user.role != Role.admin.value:
        abort(404)
    if request.method == "POST":
        csrf.protect()


def _settings():
    return current_app.config["SETTINGS"]


def _done(action: str, target: str, message: str, endpoint: str, **details):
    session = get_session()
    audit.record(session, session.get(User, current_user.id), action, target, now=now(), **details)
    session.commit()
    flash(message, "info")
    return redirect(url_for(endpoint), code=303)


def _refused(message: str, endpoint: str):
    get_session().rollback()
    flash(message, "warning")
    return redirect(url_for(endpoint), code=303)


def _user(user_id: int) -> User:
    user = get_session().get(User, user_id)
    if user is None:
        abort(404)
    return user


# --- pages -------------------------------------------------------------------------------------


@bp.get("")
def index():
    return redirect(url_for("admin.users"))


@bp.get("/users")
def users():
    return render_template("admin/users.html", users=list_users(get_session()))


@bp.get("/seats")
def seats_page():
    session, settings, moment = get_session(), _settings(), now()
    entries = waitlist.entries(session)
    return render_template("admin/seats.html", cap=seats.cap(session, settings.founding_member_cap),
                           members=seats.members(session), held=seats.held_open(session, moment),
                           left=seats.seats_left(session, settings.founding_member_cap, moment), entries=entries,
                           positions={e.id: waitlist.position(session, e) for e in entries}, now=moment,
                           health=overview.health(session, moment), dev_seats=overview.DEV_MODE_SEATS)


@bp.get("/jobs")
def jobs():
    counts, problems = overview.jobs(get_session())
    return render_template("admin/jobs.html", counts=counts, problems=problems)


@bp.get("/email")
def email():
    return render_template("admin/email.html", mail=overview.mail(get_session(), now()),
                           quota=_settings().email_max_per_hour, smtp=_settings().smtp is not None)


@bp.get("/health")
def health():
    session = get_session()
    return render_template("admin/health.html", health=overview.health(session, now()),
                           cap=seats.cap(session, _settings().founding_member_cap), dev_seats=overview.DEV_MODE_SEATS,
                           now=now())


@bp.get("/audit")
def audit_log():
    return render_template("admin/audit.html", entries=audit.recent(get_session()))


# --- actions on users ---------------------------------------------------------------------------


@bp.post("/users/<id:user_id>/plan")
def user_plan(user_id: int):
    user, plan = _user(user_id), request.form.get("plan", "")
    try:
        set_plan(user, plan)
    except ValueError as exc:
        return _refused(str(exc), "admin.users")
    return _done("set plan", f"user {user.id} ({user.display_name})", f"{user.display_name} is on the {plan} plan.",
                 "admin.users", plan=plan)


@bp.post("/users/<id:user_id>/role")
def user_role(user_id: int):
    user, role = _user(user_id), request.form.get("role", "")
    if user.id == current_user.id and role != Role.admin.value:
        return _refused("You cannot take away your own admin role (another admin can).", "admin.users")
    try:
        set_role(user, role)
    except ValueError as exc:
        return _refused(str(exc), "admin.users")
    return _done("set role", f"user {user.id} ({user.display_name})", f"{user.display_name} is now {role}.",
                 "admin.users", role=role)


@bp.post("/users/<id:user_id>/collection")
def user_collection(user_id: int):
    user, action = _user(user_id), request.form.get("action")
    try:
        if action == "pause":
            pause_archiving(get_session(), user)
        elif action == "resume":
            resume_archiving(get_session(), user, now=now())
        else:
            return _refused("Choose pause or resume.", "admin.users")
    except LeavingError as exc:
        return _refused(str(exc), "admin.users")
    return _done(f"{action} collection", f"user {user.id} ({user.display_name})",
                 f"Collection {'paused' if action == 'pause' else 'resumed'} for {user.display_name}.", "admin.users")


@bp.post("/users/<id:user_id>/reactivate")
def user_reactivate(user_id: int):
    """Back in line after a stop (failures, a refused grant): polled soon, failures forgotten."""
    user = _user(user_id)
    if user.status == UserStatus.paused.value:
        user.status = UserStatus.active.value
    resume_collection(get_session(), user, now(), random.Random())
    return _done("reactivate", f"user {user.id} ({user.display_name})",
                 f"{user.display_name} is back in line; the first poll comes within a minute.", "admin.users")


@bp.post("/users/<id:user_id>/delete")
def user_delete(user_id: int):
    user = _user(user_id)
    if request.form.get("confirm") != str(user.id):
        return _refused("Tick the confirmation to delete an account.", "admin.users")
    if user.id == current_user.id:
        return _refused("Delete your own account from Settings.", "admin.users")
    target = f"user {user.id} ({user.display_name}, {user.spotify_id})"
    delete_account(get_session(), user.id)
    return _done("delete account", target, f"Deleted {target}; its seat is free.", "admin.users")


# --- actions on seats and the waitlist ------------------------------------------------------------


@bp.post("/seats")
def set_seats():
    try:
        cap = int(request.form.get("cap", ""))
        if not 0 <= cap <= 10_000_000:
            raise ValueError
    except ValueError:
        return _refused("The number of seats must be a whole number from 0 to 10,000,000.", "admin.seats_page")
    seats.set_cap(get_session(), cap)
    return _done("set seats", "seats", f"There are now {cap} seats.", "admin.seats_page", cap=cap)


@bp.post("/waitlist/<id:entry_id>/invite")
def waitlist_invite(entry_id: int):
    entry = get_session().get(WaitlistEntry, entry_id)
    if entry is None:
        abort(404)
    if entry.admitted_at is not None:
        return _refused(f"{entry.email} has an account already.", "admin.seats_page")
    with mail_context(current_app):
        waitlist.invite(get_session(), entry, secret=_settings().secret_key, now=now(), days=_settings().invite_days)
    return _done("invite", entry.email, f"Invited {entry.email}.", "admin.seats_page")


@bp.post("/waitlist/invite")
def waitlist_invite_address():
    """Invite someone not (yet) on the waitlist: added, counted as confirmed, invited."""
    session, moment = get_session(), now()
    try:
        entry = waitlist.add_confirmed(session, request.form.get("email"), now=moment)
        with mail_context(current_app):
            waitlist.invite(session, entry, secret=_settings().secret_key, now=moment, days=_settings().invite_days)
    except AddressError as exc:
        return _refused(str(exc), "admin.seats_page")
    return _done("invite", entry.email, f"Invited {entry.email}.", "admin.seats_page")


@bp.post("/waitlist/<id:entry_id>/remove")
def waitlist_remove(entry_id: int):
    entry = get_session().get(WaitlistEntry, entry_id)
    if entry is None:
        abort(404)
    email_address = entry.email
    waitlist.remove(get_session(), entry.id)
    return _done("remove from waitlist", email_address, f"Removed {email_address} from the waitlist.",
                 "admin.seats_page")


# --- actions on jobs ----------------------------------------------------------------------------


@bp.post("/jobs/<id:job_id>/retry")
def job_retry(job_id: int):
    if not queue.retry_job(get_session(), job_id, now=now()):
        return _refused(f"Job {job_id} is not failed or stalled (any more).", "admin.jobs")
    return _done("retry job", f"job {job_id}", f"Job {job_id} will run again.", "admin.jobs")
