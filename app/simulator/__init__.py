"""A fake Spotify for tests, benchmarks and demo mode (docs/architecture.md, "The simulator").

    world.py      the state: accounts, tokens, the clock, faults, request counts
    catalogue.py  a seeded catalogue of artists, albums and tracks
    listening.py  deterministic listeners (light, commuter, binge, skip-heavy)
    export.py     Spotify data exports built from the ground truth
    app.py        create_simulator(world): accounts.py, webapi.py and control.py as
                  blueprints, with serving.py's shared helpers
    cli.py        `audiospective simulator`
"""

from .app import create_simulator
from .world import FaultRule, SimAccount, World, default_accounts, generated_accounts

__all__ = ["FaultRule", "SimAccount", "World", "create_simulator", "default_accounts", "generated_accounts"]
