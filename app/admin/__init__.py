"""The admin area, for users with the admin role (ADMIN_SPOTIFY_IDS, or
`audiospective users promote`); everyone else gets 404 on every admin URL.

    audit.py      every admin action, recorded in the action's own transaction
    overview.py   what the pages show: users, seats, the job queue, email, app health
    routes.py     /admin/…: the pages and their CSRF-protected actions
"""
