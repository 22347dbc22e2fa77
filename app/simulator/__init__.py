"""A fake Spotify for tests, benchmarks and demo mode (DESIGN.md §6).

`World` holds the state (accounts, deterministic listening, tokens, clock, faults);
`create_simulator(world)` serves it over HTTP with Spotify's wire format.
"""

from .app import create_simulator
from .world import FaultRule, SimAccount, World, default_accounts, generated_accounts

__all__ = ["FaultRule", "SimAccount", "World", "create_simulator", "default_accounts", "generated_accounts"]
