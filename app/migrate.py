"""Alembic, driven from code: `audiospective db …`, the `release` process and tests.

No alembic.ini: the script location is the project's migrations/ and the database URL
comes from configuration, passed in by the caller.
"""

from __future__ import annotations

import io

from alembic import command
from alembic.config import Config

from .config import ROOT, sqlalchemy_url


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Autogenerate must leave procrastinate's objects alone: they are not ORM models."""
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", "")
    return not (reflected and (table or "").startswith("procrastinate"))


def alembic_config(database_url: str, *, stdout=None) -> Config:
    config = Config(stdout=stdout or io.StringIO())
    config.set_main_option("script_location", str(ROOT / "migrations"))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    return config


def head() -> str:
    """The newest revision in migrations/."""
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    return ScriptDirectory.from_config(config).get_current_head()


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def current(database_url: str) -> str:
    out = io.StringIO()
    command.current(alembic_config(database_url, stdout=out))
    return out.getvalue().strip() or "(empty database: no migrations applied)"


def revision(database_url: str, message: str) -> None:
    command.revision(alembic_config(database_url), message=message)
