"""The players listens come from (play_clients): "Web Scrobbler", "Pano Scrobbler", …

Staged rows name their player (`import_stage.client_name`: API listens, an Audiospective
export's listens); plays keep it as a small id.
"""

from __future__ import annotations

import psycopg

# One merge may name this many players not seen before (play_clients ids are small: a
# hostile file or client must not use them up); listens of the players beyond, or past
# MAX_CLIENTS in all, keep no player name.
MAX_NEW_CLIENTS = 1000
MAX_CLIENTS = 30_000


def resolve(conn: psycopg.Connection) -> None:
    """The players staged rows name become this instance's (play_clients), so that plays
    keep their player (by its small id) through the API, exports and imports."""
    if conn.execute("SELECT 1 FROM import_stage WHERE client_name IS NOT NULL LIMIT 1").fetchone() is None:
        return
    conn.execute("""
        INSERT INTO play_clients (name)
        SELECT name FROM (SELECT DISTINCT client_name AS name FROM import_stage WHERE client_name IS NOT NULL) n
         WHERE NOT EXISTS (SELECT 1 FROM play_clients c WHERE c.name = n.name)
           AND (SELECT coalesce(max(id), 0) FROM play_clients) < %s
         ORDER BY name LIMIT %s
        ON CONFLICT (name) DO NOTHING
    """, (MAX_CLIENTS, MAX_NEW_CLIENTS))
    conn.execute("UPDATE import_stage s SET client_id = c.id FROM play_clients c "
                 "WHERE s.client_name IS NOT NULL AND c.name = s.client_name")
