"""The layering rules of docs/architecture.md, checked on the source: web -> domain ->
data and spotify/; jobs call domain code; domain code never imports web modules, command
modules or jobs/; capability packages do not import each other in a circle."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from app.config import ROOT

APP = ROOT / "app"

# The web layer: views and what only pages use.
# app.auth (the package) wires the login manager and the OAuth client into the app.
WEB = {"app.auth", "app.errors", "app.templating", "app.security", "app.healthz"}
# Entry points: they compose everything (the app factory, commands, the supervisor).
ENTRY = {"app", "app.__main__", "app.cli", "app.runner"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {module_name(p): p for p in APP.rglob("*.py")}
    assert len(found) > 50 and "app.archival.poll" in found  # the walk really saw the tree
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Absolute names of the modules `path` imports (relative imports resolved; `from x
    import y` counts as x.y when that is a module), wherever in the file they are."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else base)
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def is_web(name: str) -> bool:
    return name in WEB or name.endswith(".routes") or name.startswith("app.simulator")


def is_entry(name: str) -> bool:
    return name in ENTRY or name.endswith(".cli")


def test_nothing_under_app_imports_jobs():
    offenders = {name: sorted(i for i in imported if i == "jobs" or i.startswith("jobs."))
                 for name, imported in graph().items()}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_domain_code_never_imports_web_or_command_modules():
    edges = graph()
    domain = [name for name in edges if not is_web(name) and not is_entry(name)]
    assert "app.archival.poll" in domain and "app.stats.routes" not in domain
    offenders = {name: sorted(i for i in edges[name] if i.startswith("app") and (is_web(i) or is_entry(i)))
                 for name in domain}
    assert {k: v for k, v in offenders.items() if v} == {}


def package_of(name: str) -> str:
    """app.archival.poll -> app.archival; top-level modules (app.db) are their own node."""
    parts = name.split(".")
    return ".".join(parts[:2])


def test_no_import_cycles_between_packages():
    edges: dict[str, set[str]] = defaultdict(set)
    for name, imported in graph().items():
        if is_entry(name):
            continue  # entry points sit on top and may reach anything
        for target in imported:
            if target.startswith("app.") and package_of(target) != package_of(name) and not is_entry(target):
                edges[package_of(name)].add(package_of(target))
    assert edges["app.stats"] and edges["app.archival"]  # the graph is not empty

    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else path + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []
