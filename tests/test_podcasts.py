"""Podcasts and audiobooks from Spotify's exports: kept (episodes and chapters with their
shows), counted by music's rule, never in the music panels, on their own panel and in the
JSON export, and not counted twice across files or imports."""

from __future__ import annotations

import json

from conftest import new_user, sign_in
from test_exports import export_bytes
from test_import_shapes import TRACK, extended, zipped


def episode_row(ts: str, show: str, name: str, uri: str | None, ms: int, **fields) -> dict:
    return extended(ts, None, None, ms=ms, episode_name=name, episode_show_name=show, spotify_episode_uri=uri,
                    **fields)


def chapter_row(ts: str, book: str, chapter: str, ms: int) -> dict:
    return extended(ts, None, None, ms=ms, audiobook_title=book, audiobook_uri="spotify:audiobook:" + "b" * 22,
                    audiobook_chapter_uri="spotify:chapter:" + chapter[-1] * 22, audiobook_chapter_title=chapter)


def history() -> dict:
    extended_rows = [
        extended("2025-03-01T08:00:00Z", "Song", "Band", TRACK + "a" * 22),
        episode_row("2025-03-01T09:00:00Z", "The Daily", "Monday", "spotify:episode:" + "m" * 22, 1_500_000),
        episode_row("2025-03-02T09:00:00Z", "The Daily", "Tuesday", "spotify:episode:" + "t" * 22, 1_200_000),
        episode_row("2025-03-03T09:00:00Z", "Hard Fork", "AI week", "spotify:episode:" + "f" * 22, 3_000_000),
        episode_row("2025-03-04T09:00:00Z", "Hard Fork", "Skipped", "spotify:episode:" + "s" * 22, 10_000),
        episode_row("2025-03-05T09:00:00Z", "Hard Fork", "Secret", "spotify:episode:" + "x" * 22, 900_000,
                    incognito_mode=True),
        chapter_row("2025-03-06T21:00:00Z", "Dune", "Chapter 1", 1_800_000),
        chapter_row("2025-03-07T21:00:00Z", "Dune", "Chapter 2", 1_700_000),
    ]
    # Account data repeats Monday (to the minute, by names) and adds an older episode.
    podcasts = [{"endTime": "2025-03-01 09:00", "podcastName": "The Daily", "episodeName": "Monday",
                 "msPlayed": 1_500_000},
                {"endTime": "2025-02-20 07:30", "podcastName": "The Daily", "episodeName": "Last week",
                 "msPlayed": 600_000}]
    return {"my_spotify_data.zip": zipped({
        "Spotify Extended Streaming History/Streaming_History_Audio_2025.json": extended_rows,
        "Spotify Account Data/StreamingHistory_podcast_0.json": podcasts})}


def test_episodes_and_chapters_are_kept_apart_from_music(app, client, db_conn, importer):
    sign_in(client, "sim-acct-sam")
    uid = db_conn.execute("SELECT id FROM users WHERE spotify_id = 'sim-acct-sam'").fetchone()[0]
    record = importer(uid, history())
    assert record.status == "done", record.error
    report = record.report
    # Kept: Monday, Tuesday, AI week, two chapters, Last week; Monday's account row is the
    # extended one again; the 10-second episode is short and the incognito one private.
    assert (report["imported"], report["episodes"], report["duplicate_in_upload"]) == (1, 6, 1), report
    assert report["skipped"] == {"short_play": 1, "private_session": 1}
    assert db_conn.execute("SELECT count(*) FROM plays").fetchone()[0] == 1
    shows = db_conn.execute("""
        SELECT s.kind, s.name, count(*), sum(p.ms_played) FROM episode_plays p JOIN episodes e ON e.id = p.episode_id
          JOIN shows s ON s.id = e.show_id GROUP BY s.kind, s.name ORDER BY 4 DESC""").fetchall()
    assert shows == [("audiobook", "Dune", 2, 3_500_000), ("podcast", "The Daily", 3, 3_300_000),
                     ("podcast", "Hard Fork", 1, 3_000_000)]
    # Monday is one episode, known by its Spotify id, whichever file named it.
    assert db_conn.execute("SELECT count(*) FROM episodes WHERE name = 'Monday'").fetchone()[0] == 1

    panel = client.get("/dashboard/panel/podcasts?period=all").get_data(as_text=True)
    assert "Podcasts and audiobooks" in panel and "hidden" not in panel.split(">")[0]
    assert panel.index("Dune") < panel.index("The Daily") < panel.index("Hard Fork")
    assert "2 chapters" in panel and "3 episodes" in panel
    totals = client.get("/dashboard/panel/totals?period=all").get_data(as_text=True)
    assert "<dt>Plays</dt><dd>1</dd>" in totals  # music only

    again = importer(uid, history()).report
    assert (again["imported"], again["episodes"]) == (0, 0)
    assert again["already_in_archive"] == 7
    assert db_conn.execute("SELECT count(*) FROM episode_plays").fetchone()[0] == 6

    exported = json.loads(export_bytes(app, uid, "json"))
    assert {s["name"] for s in exported["shows"]} == {"Dune", "The Daily", "Hard Fork"}
    assert len(exported["episodes"]) == 6 and len(exported["episode_plays"]) == 6
    assert all(p["ms_played"] > 0 and p["played_at"].endswith("Z") for p in exported["episode_plays"])


def test_someone_without_podcasts_does_not_see_the_panel(app, client, db_conn):
    sign_in(client, "sim-acct-sam")
    panel = client.get("/dashboard/panel/podcasts?period=all").get_data(as_text=True)
    assert 'id="panel-podcasts"' in panel and " hidden" in panel.split(">")[0]


def test_the_json_export_brings_podcasts_back(app, client, db_conn, importer):
    sign_in(client, "sim-acct-sam")
    uid = db_conn.execute("SELECT id FROM users WHERE spotify_id = 'sim-acct-sam'").fetchone()[0]
    assert importer(uid, history()).status == "done"
    data = export_bytes(app, uid, "json")
    fresh = new_user(app, "fresh-instance-user")
    restored = importer(fresh, {"audiospective-sam.json": data})
    assert restored.status == "done" and restored.report["episodes"] == 6, restored.report

    def heard(user_id):
        return db_conn.execute("""
            SELECT s.kind, s.name, e.name, e.spotify_id, p.played_at, p.ms_played, p.source FROM episode_plays p
              JOIN episodes e ON e.id = p.episode_id JOIN shows s ON s.id = e.show_id
             WHERE p.user_id = %s ORDER BY p.played_at""", (user_id,)).fetchall()

    assert heard(fresh) == heard(uid) and len(heard(uid)) == 6
    again = importer(uid, {"audiospective-sam.json": data}).report
    assert again["episodes"] == 0 and again["imported"] == 0


def test_totals_count_podcasts_only_when_the_person_asks(app, client, db_conn, importer):
    from app.stats import panels
    from zoneinfo import ZoneInfo

    from app.stats.periods import resolve
    from conftest import csrf_token

    sign_in(client, "sim-acct-sam")
    uid = db_conn.execute("SELECT id FROM users WHERE spotify_id = 'sim-acct-sam'").fetchone()[0]
    assert importer(uid, history()).status == "done"
    music_only = client.get("/dashboard/panel/totals?period=all").get_data(as_text=True)
    assert "<dt>Plays</dt><dd>1</dd>" in music_only and "podcast" not in music_only
    settings = client.get("/settings").get_data(as_text=True)
    assert 'name="count_podcasts"' in settings and 'name="count_podcasts" checked' not in settings

    def choose(**extra):
        form = {"csrf_token": csrf_token(client, "/settings"), "timezone": "UTC", "rank_by": "plays", **extra}
        assert client.post("/settings", data=form).status_code == 303

    choose(count_podcasts="on")
    assert 'name="count_podcasts" checked' in client.get("/settings").get_data(as_text=True)
    asked = client.get("/dashboard/panel/totals?period=all").get_data(as_text=True)
    # 1 song and 6 episodes; 9,800,000 ms of episodes (Monday, Tuesday, AI week, Last week, two chapters).
    assert "<dt>Plays</dt><dd>7</dd>" in asked and "Including 6 podcast and audiobook plays" in asked
    assert 'href="/settings#podcasts"' in asked
    top = client.get("/dashboard/panel/top-tracks?period=all").get_data(as_text=True)
    assert "Song" in top and "Monday" not in top  # the music panels never count them
    with app.extensions["database"].reading() as conn:  # a share or a PDF report: the owner's choice
        period = resolve("all", ZoneInfo("UTC"), app.extensions["clock"]())
        frozen = panels.compute(conn, uid, "totals", period, "plays")
        assert (frozen.plays, frozen.episode_plays, frozen.episode_ms) == (7, 6, 9_800_000)
        with app.test_request_context():
            rendered = panels.render("totals", frozen, period, "plays", frozen=True)
        assert "Including 6 podcast" in rendered and "/settings" not in rendered

    choose()  # unticked: the box is absent from the form
    assert "<dt>Plays</dt><dd>1</dd>" in client.get("/dashboard/panel/totals?period=all").get_data(as_text=True)
