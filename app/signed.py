"""Signed, expiring links (confirming an email address, downloading an export): a payload
signed with SECRET_KEY under one salt per purpose, so a token made for one thing is
worthless for another. The expiry is inside the payload and checked against the app's
clock (app/time.py), not the wall clock, like every other "now"."""

from __future__ import annotations

from datetime import datetime

from itsdangerous import BadSignature, URLSafeSerializer

from .time import datetime_to_ms


class LinkError(ValueError):
    """A link that cannot be used; `expired` tells an old link from a damaged one."""

    def __init__(self, expired: bool):
        super().__init__("expired" if expired else "damaged")
        self.expired = expired


def sign(secret: str, purpose: str, payload: dict, expires: datetime) -> str:
    return URLSafeSerializer(secret, salt=purpose).dumps({**payload, "x": datetime_to_ms(expires)})


def verify(secret: str, purpose: str, token: str, now: datetime) -> dict:
    """The payload (without its expiry), or LinkError."""
    try:
        payload = URLSafeSerializer(secret, salt=purpose).loads(token)
    except (BadSignature, UnicodeError, ValueError):
        raise LinkError(expired=False) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("x"), int):
        raise LinkError(expired=False)
    if payload.pop("x") <= datetime_to_ms(now):
        raise LinkError(expired=True)
    return payload
