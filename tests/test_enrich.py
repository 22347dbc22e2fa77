"""Enrichment of artists and albums against the simulator over HTTP."""

from __future__ import annotations

import pytest

from app.archival.enrich import Enricher
from app.archival.poll import Archivist, poll_user
from conftest import add_users, freeze


@pytest.fixture
def catalogue(app, simulator, db_conn):
    """A catalogue as polling leaves it: names and cover art, no artist images or genres."""
    freeze(simulator)
    users = add_users(app, simulator, ["sim-acct-sam", "sim-acct-riley"])
    archivist = Archivist.from_app(app)
    for user_id in users.values():
        poll_user(archivist, user_id)
    return db_conn.execute("SELECT count(*) FROM artists").fetchone()[0]


def enriched(db_conn, table):
    return db_conn.execute(f"SELECT count(*) FROM {table} WHERE enriched_at IS NOT NULL").fetchone()[0]


def test_batch_endpoints_fill_images_and_genres(app, simulator, db_conn, catalogue):
    result = Enricher.from_app(app).run("artists", max_items=1000)
    assert result.used_batch and result.updated == catalogue and result.missing == 0
    assert enriched(db_conn, "artists") == catalogue
    rows = db_conn.execute("SELECT image_url, genres FROM artists").fetchall()
    assert all(image and genres for image, genres in rows)
    assert simulator.stats()["api:artists_batch"] == result.requests == -(-catalogue // 50)
    albums = Enricher.from_app(app).run("albums", max_items=1000)
    assert albums.updated == enriched(db_conn, "albums") > 0
    assert db_conn.execute("SELECT count(*) FROM albums WHERE label IS NULL").fetchone()[0] == 0


def test_development_mode_falls_back_to_single_items_and_remembers(app, simulator, db_conn, catalogue):
    simulator.world.config.batch_endpoints = False
    simulator.world.config.dev_mode_fields = True
    first = Enricher.from_app(app).run("artists", max_items=10)
    assert first.updated == 10 and not first.used_batch
    assert simulator.stats()["api:artists_batch"] == 1  # tried once, got 403...
    assert db_conn.execute("SELECT key FROM app_flags").fetchall() == [("catalogue_batch_forbidden",)]
    Enricher.from_app(app).run("artists", max_items=10)
    assert simulator.stats()["api:artists_batch"] == 1  # ...and did not try again
    assert simulator.stats()["api:artists_single"] == 20
    assert db_conn.execute("SELECT genres FROM artists WHERE enriched_at IS NOT NULL LIMIT 1").fetchone()[0] == []


def test_transient_errors_never_become_not_found(app, simulator, db_conn, catalogue):
    simulator.call("POST", "/_sim/faults", json={"rules": [{"kind": "server_error", "endpoints": ["artists_batch"]}]})
    result = Enricher.from_app(app).run("artists", max_items=100)
    assert result.updated == 0 and result.missing == 0 and result.stopped.startswith("spotify_5xx")
    assert db_conn.execute("SELECT count(*) FROM artists WHERE enriched_at IS NOT NULL OR missing_at IS NOT NULL"
                           ).fetchone()[0] == 0
    simulator.call("DELETE", "/_sim/faults")
    assert Enricher.from_app(app).run("artists", max_items=1000).updated == catalogue


def test_items_spotify_does_not_know_are_marked_missing(app, simulator, db_conn, catalogue):
    db_conn.execute("INSERT INTO artists (spotify_id, name) VALUES ('0000000000000000000000', 'Gone')")
    Enricher.from_app(app).run("artists", max_items=1000)
    assert db_conn.execute("SELECT missing_at IS NOT NULL, enriched_at FROM artists WHERE name = 'Gone'"
                           ).fetchone() == (True, None)
    # Single-item path: a 404 says the same.
    db_conn.execute("UPDATE artists SET missing_at = NULL WHERE name = 'Gone'")
    simulator.world.config.batch_endpoints = False
    Enricher.from_app(app).run("artists", max_items=1000)
    assert db_conn.execute("SELECT missing_at IS NOT NULL FROM artists WHERE name = 'Gone'").fetchone() == (True,)


def test_enrichment_stops_when_polling_needs_the_budget(app, simulator, db_conn, catalogue):
    db_conn.execute("UPDATE api_budget SET tokens = 10, updated_at = clock_timestamp()")  # 10 of 150: under the reserve
    result = Enricher.from_app(app).run("artists", max_items=1000)
    assert result.stopped == "budget" and result.requests == 0 and enriched(db_conn, "artists") == 0


def test_imported_tracks_are_resolved_by_enrichment(app, simulator, db_conn):
    import io

    from app.imports.service import create_import, run_import
    from app.simulator.export import export_zip

    now = freeze(simulator)
    user = add_users(app, simulator, ["sim-acct-jo"])["sim-acct-jo"]
    database = app.extensions["database"]
    with database.session() as session:
        data = export_zip(simulator.world, simulator.world.account("sim-acct-jo"), now - 20 * 86_400_000, now)
        import_id = create_import(session, user, [("x.zip", io.BytesIO(data))], "default").id
    run_import(database, import_id)
    pending = db_conn.execute("SELECT count(*) FROM tracks WHERE enriched_at IS NULL").fetchone()[0]
    assert pending > 0
    assert db_conn.execute("SELECT count(*) FROM albums WHERE spotify_id IS NULL").fetchone()[0] > 0

    result = Enricher.from_app(app).run("tracks", max_items=1000)
    assert result.updated == pending and result.used_batch
    assert db_conn.execute("SELECT count(*) FROM tracks WHERE enriched_at IS NULL").fetchone()[0] == 0
    # Every track now points at its real album and its real artists, in Spotify's order.
    world = simulator.world
    for spotify_id, album, artists in db_conn.execute("""
            SELECT t.spotify_id, al.spotify_id, array_agg(a.spotify_id ORDER BY ta.position)
              FROM tracks t JOIN albums al ON al.id = t.album_id
              JOIN track_artists ta ON ta.track_id = t.id JOIN artists a ON a.id = ta.artist_id
             GROUP BY t.spotify_id, al.spotify_id"""):
        index = world.catalogue.lookup("tracks", spotify_id)
        track = world.catalogue.tracks[index]
        assert album == world.catalogue.albums[track.album_index].id
        assert artists == [world.catalogue.artists[i].id for i in track.artist_indexes]
