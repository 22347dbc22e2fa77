"""The lock files agree with pyproject.toml, with each other and with what is installed.

requirements.txt is what a Heroku-style buildpack installs; requirements-dev.txt is what
`./dev` installs. Editing pyproject.toml's dependencies without `./dev lock` fails here,
offline: every dependency must be pinned at a version its specifier admits, and the lock
must hold exactly the packages those dependencies need, no fewer and no stale extras.
(test_deploy.py installs requirements.txt into a new virtualenv, hash-checked.)
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from app.config import ROOT

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def pins(path: Path) -> dict[str, tuple[str, str | None]]:
    """name -> (version, marker) of every pinned line; each must carry hashes."""
    found: dict[str, tuple[str, str | None]] = {}
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines):
        match = PIN.match(line)
        if match:
            name, version, marker = match.groups()
            assert lines[number + 1].strip().startswith("--hash=sha256:"), f"{path.name}: {name} has no hash"
            found[canonicalize_name(name)] = (version, marker)
    return found


def applies(marker: str | None) -> bool:
    return marker is None or Requirement(f"x; {marker}").marker.evaluate()


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def closure(requirements: list[str]) -> set[str]:
    """Every distribution these requirements need on this platform, from the installed
    packages' own metadata (the environment `./dev` built from the lock)."""
    seen: set[str] = set()
    todo = [(Requirement(r), ()) for r in requirements]
    while todo:
        requirement, extras = todo.pop()
        env = default_environment()
        if requirement.marker and not any(requirement.marker.evaluate(env | {"extra": e}) for e in extras or ("",)):
            continue
        name = canonicalize_name(requirement.name)
        key = name + "[" + ",".join(sorted(requirement.extras)) + "]"
        if key in seen:
            continue
        seen.add(key)
        for child in metadata.requires(name) or []:
            todo.append((Requirement(child), tuple(requirement.extras)))
    return {key.split("[")[0] for key in seen}


@pytest.mark.parametrize("lock, groups", [("requirements.txt", ()), ("requirements-dev.txt", ("test",))])
def test_every_dependency_is_pinned_where_pyproject_allows(lock, groups):
    pinned = pins(ROOT / lock)
    wanted = project()["dependencies"] + [r for g in groups for r in project()["optional-dependencies"][g]]
    for line in wanted:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{lock} does not pin {name}: run ./dev lock"
        assert requirement.specifier.contains(pinned[name][0], prereleases=True), (
            f"pyproject.toml asks for {line} but {lock} pins {pinned[name][0]}: run ./dev lock")
    assert closure(wanted) == {name for name, (_, marker) in pinned.items() if applies(marker)}, (
        f"{lock} holds other packages than pyproject.toml's dependencies need: run ./dev lock")


def test_the_dev_lock_keeps_the_deploy_locks_versions_and_the_environment_is_the_lock():
    deploy, dev = pins(ROOT / "requirements.txt"), pins(ROOT / "requirements-dev.txt")
    assert deploy and {name: dev[name][0] for name in deploy} == {name: v for name, (v, _) in deploy.items()}
    installed = {name: metadata.version(name) for name, (_, marker) in dev.items() if applies(marker)}
    assert installed == {name: version for name, (version, marker) in dev.items() if applies(marker)}


def test_python_version_is_one_the_project_supports():
    version = (ROOT / ".python-version").read_text().strip()
    assert re.fullmatch(r"3\.\d+", version), "a major.minor version, as buildpacks read it"
    from packaging.specifiers import SpecifierSet

    assert SpecifierSet(project()["requires-python"]).contains(version + ".0")
