"""`audiospective simulator`: serve the fake Spotify on its own."""

from __future__ import annotations

from pathlib import Path

import click

from ..config import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET


@click.command()
@click.option("--port", type=int, default=5001, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--seed", type=int, default=42, show_default=True, help="Same seed, same catalogue and listening.")
@click.option("--rotate-refresh-tokens", is_flag=True, help="Issue a new refresh token on every refresh and revoke the old.")
@click.option("--dev-mode", is_flag=True, help="Behave like a development-mode Spotify app: batch catalogue "
              "endpoints answer 403, no genres or popularity.")
@click.option("--latency-ms", type=int, default=0, show_default=True, help="Added to every response.")
@click.option("--accounts", "extra_accounts", type=int, default=0, show_default=True,
              help="Also generate this many listeners of mixed profiles (for load tests).")
@click.option("--client-id", default=DEMO_CLIENT_ID, show_default=True)
@click.option("--client-secret", default=DEMO_CLIENT_SECRET, show_default=True)
@click.option("--state", "state_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Keep the tokens it issues in this file, so a restart still honours them [default: forget them].")
def simulator(port: int, host: str, seed: int, rotate_refresh_tokens: bool, dev_mode: bool, latency_ms: int,
              extra_accounts: int, client_id: str, client_secret: str, state_path: Path | None) -> None:
    """Serve the Spotify simulator (a fake Spotify for demos and tests)."""
    from werkzeug.serving import make_server

    from . import World, create_simulator, default_accounts, generated_accounts

    world = World(seed=seed, client_id=client_id, client_secret=client_secret, state_path=state_path,
                  accounts=default_accounts() + generated_accounts(extra_accounts, seed))
    world.config.rotate_refresh_tokens = rotate_refresh_tokens
    world.config.batch_endpoints = not dev_mode
    world.config.dev_mode_fields = dev_mode
    world.config.latency_ms = latency_ms
    server = make_server(host, port, create_simulator(world), threaded=True)
    click.echo(f"Spotify simulator listening on http://{host}:{port} (seed {seed}, "
               f"{len(world.accounts)} accounts); control API under /_sim", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
