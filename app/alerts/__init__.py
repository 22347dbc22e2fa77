"""Alerts: mail when collection is at risk, and before Spotify's consent runs out.

    service.py   the incidents and their three-mail series; the reminders; turning off
    routes.py    /alerts/off (the List-Unsubscribe link in every alert)
"""
