"""What this app accepts as an email address, and how it keeps one."""

from __future__ import annotations

import re

_ADDRESS = re.compile(r"[^\s@<>()\[\]\\,;:\"]{1,64}@[^\s@<>()\[\]\\,;:\"]+\.[^\s@<>()\[\]\\,;:\".]{2,}")


class AddressError(ValueError):
    """An address that cannot be used, with a message for the person."""


def normalise(raw: str | None) -> str:
    address = (raw or "").strip()
    if not address:
        raise AddressError("Enter an email address.")
    if len(address) > 254 or not address.isprintable() or not _ADDRESS.fullmatch(address):
        raise AddressError("That does not look like an email address (name@example.com).")
    local, domain = address.rsplit("@", 1)
    return f"{local}@{domain.lower()}"
