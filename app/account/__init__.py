"""What belongs to a person rather than to their listening: their account (looked up and
created here, from Spotify's profile at sign-in or ahead of it by an operator) and their
settings and preferences. Deletion, an email address and notification preferences will
live here too.

    users.py        finding, creating and listing users
    sessions.py     sign-ins kept server-side, so that signing out ends them everywhere
    preferences.py  time zone and display preferences, validated and saved
    routes.py       /settings
    cli.py          `audiospective users …`
"""
