"""Membership: a fixed number of seats (founding members), a fair waitlist beyond them,
and invitations when seats free up.

    seats.py      the cap, who holds a seat, and the one atomic admission of a new account
    waitlist.py   join (double opt-in), position, invite (the job, or an admin), leave
    routes.py     /waitlist, /waitlist/confirm, /waitlist/leave, /invite
"""
