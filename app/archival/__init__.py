"""Archival: keeping every play Spotify shows, before it scrolls out of the 50-play window.

    dispatch.py  who is due; claims them and defers poll jobs in batches; resuming a
                 user's collection at sign-in
    poll.py      one poll of one user, in one transaction; failures recorded per user
    page.py      recently-played JSON -> plays; the gap rule
    store.py     set-based upserts of catalogue and plays
    cadence.py   when to poll next (adaptive to each user's listening speed)
    failures.py  per-class circuit breaker: cooldowns, deactivation
    budget.py    the app-wide request budget and 429 pause, shared through Postgres
    enrich.py    artist/album details, on what polling leaves of the budget
    health.py    what the dashboard tells a user about their archive

Jobs (jobs/archival.py) are thin wrappers; `audiospective archive --user ID` polls one
user now through the same code.
"""
