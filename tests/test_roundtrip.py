"""Round trips: an archive exported and imported into a fresh instance (its own database)
is the same archive, field by field; imported into the archive it came from, it adds
nothing. Native JSON through the commands an operator uses; Spotify's shape as a person
would upload it. And native files built to break the reader are refused or counted."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone

import pytest
from conftest import TEST_DB, app_environ, cli, fresh_database, new_user
from test_exports import archive, export_bytes  # noqa: F401 - the fixture is shared

from app import create_app
from app.config import load_settings
from app.imports.service import create_import, run_import
from app.migrate import upgrade
from app.models import User


@pytest.fixture
def second(pg_admin_url, simulator):
    """Another instance: its own, freshly migrated database."""
    url = fresh_database(pg_admin_url, TEST_DB + "_second")
    upgrade(url)
    other = create_app({"TESTING": True}, settings=load_settings(app_environ(url, simulator.url)))
    yield other
    other.extensions["database"].dispose()


def import_into(app, user_id: int, files: dict[str, bytes]):
    database = app.extensions["database"]
    with database.session() as session:
        import_id = create_import(session, user_id, [(n, io.BytesIO(d)) for n, d in files.items()], "default").id
    return run_import(database, import_id)


def everything(app, user_id: int) -> list[tuple]:
    """Each play with all it points to, by what survives a move (never the local ids)."""
    with app.extensions["database"].engine.raw_connection() as raw:
        cursor = raw.cursor()
        cursor.execute("""
            SELECT (extract(epoch FROM p.played_at) * 1000)::bigint, p.source, p.ms_played,
                   t.spotify_id, t.name, t.artist_name, t.duration_ms, t.explicit, t.isrc,
                   al.spotify_id, al.name, al.album_type, al.release_date, al.total_tracks, al.image_url, al.label,
                   (SELECT array_agg(coalesce(a.spotify_id, '-') || '|' || a.name || '|' || coalesce(a.image_url, '')
                                     || '|' || coalesce(array_to_string(a.genres, ','), '') ORDER BY ta.position)
                      FROM track_artists ta JOIN artists a ON a.id = ta.artist_id WHERE ta.track_id = t.id)
              FROM plays p JOIN tracks t ON t.id = p.track_id LEFT JOIN albums al ON al.id = t.album_id
             WHERE p.user_id = %s ORDER BY p.played_at, t.spotify_id, t.name""", (user_id,))
        return cursor.fetchall()


def gaps_of(app, user_id: int) -> list[tuple]:
    with app.extensions["database"].engine.raw_connection() as raw:
        cursor = raw.cursor()
        cursor.execute("SELECT starts_at, ends_at, reason, filled_at IS NULL FROM gaps WHERE user_id = %s "
                       "ORDER BY starts_at", (user_id,))
        return cursor.fetchall()


def test_a_native_export_rebuilds_the_archive_in_a_fresh_instance(app, archive, second, worker_env, tmp_path,  # noqa: F811
                                                                    db_conn):
    sam = archive["sim-acct-sam"]
    db_conn.execute("UPDATE artists SET genres = ARRAY['post-punk', 'näive'], image_url = 'https://i.scdn.co/image/a' "
                    "WHERE id % 4 = 0 AND spotify_id IS NOT NULL")
    db_conn.execute("UPDATE tracks SET isrc = 'GBAYE0601498', explicit = true WHERE id % 5 = 0")
    original = everything(app, sam)
    sources = {row[1] for row in original}
    assert len(original) > 2_000 and sources == {1, 2, 3}, "polled, extended and account-data plays"
    assert any(row[3] is None for row in original), "name-only tracks (account data) must be in the test"
    assert any(row[8] for row in original) and any("post-punk" in "".join(row[16]) for row in original)

    exported = tmp_path / "audiospective-sam-all.json"
    done = cli("export", "--user", str(sam), "--format", "json", "-o", str(exported), env=worker_env, timeout=120)
    assert done.returncode == 0, done.stderr
    other_env = {**worker_env, "DATABASE_URL": second.config["SETTINGS"].database_url}
    assert cli("users", "add", "--spotify-id", "sam-moved", "--name", "Sam", env=other_env).returncode == 0
    imported = cli("import", "--user", "sam-moved", str(exported), env=other_env, timeout=120)
    assert imported.returncode == 0, imported.stderr
    report = json.loads(imported.stdout.strip().splitlines()[-1])["report"]
    episodes = db_conn.execute("SELECT count(*) FROM episode_plays WHERE user_id = %s", (sam,)).fetchone()[0]
    assert report["imported"] == len(original) and report["gaps_restored"] == 1, report
    assert report["episodes"] == episodes > 0, report  # the simulator's exports hold podcast episodes
    assert not report["skipped"], report

    with second.extensions["database"].sessionmaker() as session:
        moved = session.query(User).filter_by(spotify_id="sam-moved").one().id
    assert everything(second, moved) == original  # every field of every play and of what it points to
    assert gaps_of(second, moved) == gaps_of(app, sam)

    # Again into either archive: nothing new.
    for target, user in ((app, sam), (second, moved)):
        again = import_into(target, user, {exported.name: exported.read_bytes()})
        assert again.status == "done" and again.report["imported"] == 0, again.report
        assert again.report["already_in_archive"] == len(original) + episodes, again.report
    assert everything(app, sam) == original


def test_a_spotify_shape_export_gives_the_same_plays_in_a_fresh_instance(app, archive, second, db_conn):  # noqa: F811
    sam = archive["sim-acct-sam"]
    original = everything(app, sam)
    fresh = new_user(second, "sam-elsewhere")
    result = import_into(second, fresh, {"my_spotify_data.zip": export_bytes(app, sam, "spotify")})
    assert result.status == "done" and result.report["imported"] == len(original), result.report
    moved = everything(second, fresh)

    def by_second(rows: list[tuple]) -> list[tuple]:
        # What Spotify's shape carries: the end to the second, the track's id and name, the album's name.
        return sorted((row[0] // 1000, row[3], row[4].lower(), row[10]) for row in rows)

    assert by_second(moved) == by_second(original)
    played = {(ms // 1000, spotify_id or name.lower()): ms_played for ms, source, ms_played, spotify_id, name, *_ in
              original if source != 1}
    for ms, _, ms_played, spotify_id, name, *_ in moved:
        if (ms // 1000, spotify_id or name.lower()) in played:
            assert ms_played == played[(ms // 1000, spotify_id or name.lower())]


def test_songs_without_an_artist_move_with_their_albums(app, second):
    """Apple's artist-less songs, one track per album, exported and imported into a fresh
    instance: still one track per album."""
    from test_import_services import APPLE_INTROS, apple_intros_csv, tracks_and_albums

    apple = new_user(app, "apple-listener")
    assert import_into(app, apple, {"Apple Music Play Activity.csv": apple_intros_csv()}).report["imported"] == 5
    moved = new_user(second, "apple-moved")
    result = import_into(second, moved, {"audiospective.json": export_bytes(app, apple, "json")})
    assert result.status == "done" and result.report["imported"] == 5, result.report
    with second.extensions["database"].connection() as conn:
        assert tracks_and_albums(conn, moved) == APPLE_INTROS


def _native(plays: list, tracks: list | None = None, version: int = 1, **extra) -> bytes:
    document = {"format": "audiospective", "version": version, "artists": [{"id": 1, "name": "A"}],
                "albums": [], "tracks": tracks if tracks is not None else [
                    {"id": 1, "spotify_id": "0" * 22, "name": "Song", "album": None, "artists": [1]}],
                "plays": plays, "gaps": [], **extra}
    return json.dumps(document).encode()


PLAY = {"played_at": "2025-01-01T10:00:00.123Z", "track": 1, "ms_played": 200000, "source": "poll"}


@pytest.mark.parametrize("name, data, verdict", [
    ("a version from the future", _native([PLAY], version=2), "version 2"),
    ("nested a million deep", b'{"format":"audiospective","version":1,"plays":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
     "nested"),
    ("cut short", _native([PLAY])[:-20], "damaged"),
])
def test_native_files_that_cannot_be_read_are_refused_with_a_message(app, archive, db_conn, name, data,  # noqa: F811
                                                                     verdict):
    fresh = new_user(app, "someone-new")
    result = import_into(app, fresh, {"audiospective-x.json": data})
    assert result.status == "failed" and verdict in result.error, (name, result.error)
    assert db_conn.execute("SELECT count(*) FROM plays WHERE user_id = %s", (fresh,)).fetchone()[0] == 0


def test_hostile_rows_of_a_native_file_are_counted_not_stored(app, archive, db_conn):  # noqa: F811
    fresh = new_user(app, "someone-new")
    good = [dict(PLAY, played_at=f"2025-01-01T10:0{n}:00.123Z") for n in range(8)]
    bad = [dict(PLAY, track=99), dict(PLAY, track=2**40), dict(PLAY, ms_played=-1), dict(PLAY, source="telepathy"),
           dict(PLAY, played_at="yesterday"), "not a play", dict(PLAY, ms_played=10**30)]
    tracks = [{"id": 1, "spotify_id": "0" * 22, "name": "Song\u0000 with NUL", "album": None, "artists": [1, 7]},
              {"id": 2, "spotify_id": "javascript:alert(1)", "name": "\ud800", "album": 5, "artists": "x"}]
    result = import_into(app, fresh, {"whatever.json": _native(good + bad, tracks=tracks)})
    assert result.status == "done", result.error
    assert result.report["imported"] == 8 and result.report["skipped"] == {"malformed_row": len(bad)}, result.report
    assert db_conn.execute("SELECT DISTINCT t.name FROM plays p JOIN tracks t ON t.id = p.track_id "
                           "WHERE p.user_id = %s", (fresh,)).fetchall() == [("Song with NUL",)]
    assert db_conn.execute("SELECT count(*) FROM tracks WHERE spotify_id LIKE 'javascript%'").fetchone()[0] == 0


def test_a_native_file_keeps_its_listens_players_and_refuses_to_be_a_player_flood(app, db_conn, monkeypatch):
    """Listens sent through the API carry their player (`client`) in the native file; an
    import keeps it, and their time as archived (a listen's start was moved to its end
    when it arrived, never again on import: it was moved by its length here before).
    Unusable names (NUL, 10,000 characters, not text) cost the play its player only, and
    one file adds at most MAX_NEW_CLIENTS players."""
    from app.imports import clients

    monkeypatch.setattr(clients, "MAX_NEW_CLIENTS", 3)
    fresh = new_user(app, "someone-new")
    named = ["Pano Scrobbler", "multi-scrobbler", "Pano Scrobbler", "web scrobbler ✓", "Fourth player", "\u0000x",
             "y" * 10_000, 42]
    plays = [dict(PLAY, played_at=f"2025-01-01T10:{n:02d}:00.123Z", source="listen", client=name)
             for n, name in enumerate(named)]
    result = import_into(app, fresh, {"whatever.json": _native(plays)})
    assert result.status == "done" and result.report["imported"] == len(named), result.report
    players = dict(db_conn.execute(
        "SELECT to_char(p.played_at, 'MI'), c.name FROM plays p LEFT JOIN play_clients c ON c.id = p.client_id "
        "WHERE p.user_id = %s", (fresh,)).fetchall())
    # Three new players, the first in name order; "web scrobbler ✓" comes fourth and keeps none, as do
    # the unusable names.
    assert db_conn.execute("SELECT min(played_at) FROM plays WHERE user_id = %s", (fresh,)).fetchone()[0] == \
        datetime(2025, 1, 1, 10, 0, 0, 123_000, tzinfo=timezone.utc)
    assert players == {"00": "Pano Scrobbler", "01": "multi-scrobbler", "02": "Pano Scrobbler", "03": None,
                       "04": "Fourth player", "05": None, "06": None, "07": None}, players
