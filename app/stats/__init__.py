"""Looking at the archive: the dashboard and its panels, artist/album/track pages, the
history, and the settings that shape them (time zone, plays or minutes).

    periods.py    local periods -> exact UTC instants (DST-safe)
    queries.py    the dashboard's numbers, from the rollups of migration 0004
    entities.py   one artist, album or track
    history.py    plays newest first, keyset-paginated, searchable
    charts.py     SVG charts rendered on the server
    cache.py      rendered fragments, keyed by the archive's version (exact)
    routes.py     pages and HTMX fragments
"""
