"""app.json, Heroku's app manifest (what a "Deploy to Heroku" button reads), checked against
the fields Heroku documents, the Procfile, and the configuration the app really reads."""

from __future__ import annotations

import json
import re
import secrets

from app.config import DEFAULT_FAILURE_RULES, ROOT, load_settings
from conftest import procfile

MANIFEST = json.loads((ROOT / "app.json").read_text())
# Heroku's app.json schema: the top-level keys, and those of an env entry.
TOP_LEVEL = {"name", "description", "keywords", "website", "repository", "logo", "success_url", "scripts", "env",
             "formation", "image", "addons", "buildpacks", "environments", "stack"}
ENV_KEYS = {"description", "value", "required", "generator", "order"}
SCRIPTS = {"postdeploy", "pr-predestroy"}
SIZES = {"eco", "basic", "standard-1x", "standard-2x", "performance-m", "performance-l", "performance-l-ram",
         "performance-xl", "performance-2xl"}
# Read by the app but not set through app.json, and why.
NOT_IN_MANIFEST = {
    "DATABASE_URL": "set by the Postgres add-on",
    "PORT": "set by the platform",
    "AUDIOSPECTIVE_DATA_DIR": "local state of the embedded Postgres, unused when DATABASE_URL is set",
    "SPOTIFY_ACCOUNTS_URL": "the simulator's, for demo mode and tests",
    "SPOTIFY_API_URL": "the simulator's, for demo mode and tests",
}


def variables_the_app_reads() -> set[str]:
    source = (ROOT / "app" / "config.py").read_text()
    return set(re.findall(r'(?:get|secret)\("([A-Z0-9_]+)"', source)) | {f"FAILURE_{k.upper()}" for k in DEFAULT_FAILURE_RULES}


def test_only_documented_fields_with_documented_types():
    assert set(MANIFEST) <= TOP_LEVEL, set(MANIFEST) - TOP_LEVEL
    assert isinstance(MANIFEST["name"], str) and 3 <= len(MANIFEST["name"]) <= 30
    assert isinstance(MANIFEST["description"], str) and MANIFEST["description"]
    assert all(isinstance(k, str) for k in MANIFEST["keywords"])
    assert MANIFEST["stack"] in {"heroku-22", "heroku-24"}
    assert MANIFEST["buildpacks"] == [{"url": "heroku/python"}]
    for name, script in MANIFEST["scripts"].items():
        assert name in SCRIPTS and isinstance(script, str)
    for name, entry in MANIFEST["env"].items():
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", name)
        assert set(entry) <= ENV_KEYS and entry["description"].strip(), name
        assert isinstance(entry.get("value", ""), str) and isinstance(entry.get("required", True), bool), name
        assert entry.get("generator", "secret") == "secret", name
        assert not ("value" in entry and "generator" in entry), name


def test_formation_addons_and_release_match_the_procfile():
    processes = procfile()
    assert set(MANIFEST["formation"]) == {"web", "worker"} == set(processes) - {"release"}
    for entry in MANIFEST["formation"].values():
        assert isinstance(entry["quantity"], int) and entry["quantity"] == 1 and entry["size"] in SIZES
    # Eco dynos sleep after 30 minutes without web traffic, and the worker with them: polls would stop.
    assert all(entry["size"] != "eco" for entry in MANIFEST["formation"].values())
    plans = [a["plan"] if isinstance(a, dict) else a for a in MANIFEST["addons"]]
    assert plans == ["heroku-postgresql:essential-0"]
    assert MANIFEST["scripts"]["postdeploy"] == processes["release"]


def test_every_variable_the_app_reads_is_described_or_set_elsewhere():
    described, read = set(MANIFEST["env"]), variables_the_app_reads()
    assert described <= read | {"WEB_CONCURRENCY"}, described - read  # gunicorn reads WEB_CONCURRENCY
    assert read - described == set(NOT_IN_MANIFEST), read - described


def test_what_the_button_sets_starts_the_app_with_the_codes_own_defaults():
    """Secrets generated as Heroku does (64 hex digits), the required values a person types
    in, every optional value as app.json gives it: the configuration loads, and each value
    app.json states is the code's own default (the two never drift apart)."""
    required = {"SPOTIFY_CLIENT_ID": "client", "SPOTIFY_CLIENT_SECRET": "secret",
                "SPOTIFY_REDIRECT_URI": "https://my-archive.herokuapp.com/auth/callback",
                "DATABASE_URL": "postgres://u:p@db.example:5432/d"}
    generated = {name: secrets.token_hex(32) for name, e in MANIFEST["env"].items() if e.get("generator") == "secret"}
    assert set(generated) == {"SECRET_KEY", "TOKEN_ENCRYPTION_KEY"}
    assert {n for n, e in MANIFEST["env"].items() if e.get("required", True) and "generator" not in e
            and "value" not in e} == set(required) - {"DATABASE_URL"}
    values = {name: e["value"] for name, e in MANIFEST["env"].items() if "value" in e}
    base = required | generated
    with_manifest = load_settings(base | values)
    assert with_manifest.trust_proxy == 1  # Heroku's router
    code_defaults = load_settings(base)
    differing = {f for f in with_manifest.__dataclass_fields__
                 if getattr(with_manifest, f) != getattr(code_defaults, f)}
    assert differing == {"trust_proxy"}, differing
