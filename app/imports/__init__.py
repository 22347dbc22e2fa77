"""Importing the Spotify data exports people actually have (docs/spotify.md, "Data export files").

    formats.py   which files count, and a row -> a play or a named reason (the counting rule)
    sources.py   opening uploads safely: zips as Spotify sends them, loose JSON, streamed
    merge.py     COPY into staging, set-based merge with the archive
    service.py   create an import, run it in one transaction, write the report
    routes.py    the Import page, live progress, past reports
"""
