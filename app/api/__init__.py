"""The ListenBrainz-compatible API: per-user tokens (tokens.py) and the `/1/` routes
(routes.py), so that scrobblers written for ListenBrainz work when pointed at this server."""
