"""Rendered statistics fragments, cached per process and keyed by the user's archive
version (bumped by the plays triggers in the same transaction as any change), so a
cached fragment is never stale: new plays, an import or a deletion change the key."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Hashable

import sqlalchemy as sa
from sqlalchemy.engine import Connection


def archive_version(conn: Connection, uid: int) -> int:
    return conn.execute(sa.text("SELECT version FROM archive_versions WHERE user_id = :uid"), {"uid": uid}).scalar() or 0


class FragmentCache:
    def __init__(self, size: int = 4096):
        self._items: OrderedDict[Hashable, str] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get_or_render(self, key: Hashable, render: Callable[[], str]) -> str:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
        html = render()  # outside the lock: renders of different keys run in parallel
        with self._lock:
            self.misses += 1
            self._items[key] = html
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return html

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
