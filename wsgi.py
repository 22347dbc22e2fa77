"""gunicorn entry point: `gunicorn wsgi:app`."""

import sys

from app import create_app
from app.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    print(f"audiospective: configuration error: {exc}", file=sys.stderr, flush=True)
    # gunicorn treats exit status 3 as "worker failed to boot" and stops instead of respawning.
    raise SystemExit(3) from None
