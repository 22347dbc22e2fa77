"""gunicorn entry points: `gunicorn wsgi:asgi -k asgi`, the Procfile's web process (the
listen API's fast path on the event loop, the rest of the app in threads), or
`gunicorn wsgi:app` for the app in plain WSGI."""

import sys

from app import create_app
from app.api.routes import asgi_app
from app.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    print(f"audiospective: configuration error: {exc}", file=sys.stderr, flush=True)
    # gunicorn treats exit status 3 as "worker failed to boot" and stops instead of respawning.
    raise SystemExit(3) from None
asgi = asgi_app(app)
