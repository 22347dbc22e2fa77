"""A Flask app that serves a `World` in Spotify's wire format, one blueprint per service:

    accounts.py  the accounts service: consent page, token endpoint
    webapi.py    the Web API subset the product uses, and generated cover art
    control.py   /_sim: the control API for tests, benchmarks and developers

The world is the app's `WORLD` setting; views reach it through serving.world().
"""

from __future__ import annotations

from flask import Flask

from ..config import ROOT
from . import accounts, control, webapi
from .world import World


def create_simulator(world: World) -> Flask:
    sim = Flask("audiospective.simulator", template_folder=str(ROOT / "templates"), static_folder=None)
    sim.config["WORLD"] = world
    for blueprint in (accounts.bp, webapi.bp, control.bp):
        sim.register_blueprint(blueprint)
    return sim
