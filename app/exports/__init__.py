"""Exports: a user's archive, whole or for a period, in formats other tools read
(docs/exports.md).

    files.py     the three file formats, written row by row from server-side cursors
    storage.py   an export's bytes in Postgres: compressed, chunked, streamed in and out
    service.py   ask for an export, run it (the job), list, expire
    routes.py    the Export page, live progress, downloads
    cli.py       `audiospective export`
"""
