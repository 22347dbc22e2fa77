"""Share snapshots: chosen panels of one period, frozen when made, published at an
unguessable URL that needs no sign-in, with an optional expiry, a view count, revoke
and delete.

    service.py   make, open (counting views), list, revoke, delete
    routes.py    /shares (the owner's list and form) and /s/<token> (the public page)
"""
