"""What belongs to a person rather than to their listening: their account (looked up and
created here, from Spotify's profile at sign-in or ahead of it by an operator) and their
settings and preferences, their email address, and their leaving.

    users.py        finding, creating and listing users
    sessions.py     sign-ins kept server-side, so that signing out ends them everywhere
    preferences.py  time zone and display preferences, validated and saved
    addresses.py    an email address, confirmed through a signed link
    leaving.py      pausing collection; deleting the account and everything of it
    routes.py       /settings
    cli.py          `audiospective users …`
"""
