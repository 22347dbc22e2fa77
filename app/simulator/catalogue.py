"""A deterministic music catalogue: artists, albums and tracks with Spotify-shaped ids.

Everything derives from the seed, so two simulators with the same seed agree on every
id, name and duration. Track popularity is Zipf-like (rank r has weight 1/r), which is
what real listening looks like: a few tracks get most plays, a long tail gets one each.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from dataclasses import dataclass, field
from itertools import accumulate

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

_ADJECTIVES = (
    "Velvet Silver Hollow Electric Golden Quiet Neon Paper Crimson Midnight Glass Wild Lunar "
    "Amber Distant Broken Northern Violet Static Gentle Restless Hidden Burning Frozen Lucky "
    "Coastal Faded Bright Secret Slow Sudden Tender Iron Copper Pale Endless Little Open"
).split()
_NOUNS = (
    "Harbor Echo Garden Signal River Lantern Engine Horizon Mirror Orchard Meadow Canyon Parade "
    "Satellite Window Highway Ocean Compass Forest Balloon Comet Archive Island Thunder Letter "
    "Station Shadow Harvest Machine Circus Tide Ember Valley Atlas Wave Cathedral Kingdom"
).split()
_FIRST = "Mara Theo Ines Jonah Priya Lukas Noor Emil Sade Ravi Ada Felix Yuki Omar Lena Tariq Iris Nils".split()
_LAST = "Quinn Vale Moreau Okafor Lindqvist Haddad Sato Novak Reyes Brandt Kaur Ferreira Holm Adeyemi".split()
GENRES = (
    "indie pop|dream pop|synthwave|art rock|neo soul|alt country|post-punk|lo-fi beats|"
    "jazz fusion|chamber folk|electro house|shoegaze|trip hop|afrobeats|k-indie|ambient"
).split("|")


def spotify_id(seed: int, kind: str, index: int) -> str:
    """A 22-character base62 id, stable for (seed, kind, index)."""
    digest = int.from_bytes(hashlib.sha256(f"{seed}:{kind}:{index}".encode()).digest()[:17], "big")
    chars = []
    for _ in range(22):
        digest, rem = divmod(digest, 62)
        chars.append(BASE62[rem])
    return "".join(chars)


@dataclass(frozen=True)
class SimItem:
    id: str  # a Spotify id: 22 base-62 characters
    name: str


@dataclass(frozen=True)
class SimArtist(SimItem):
    genres: tuple[str, ...]


@dataclass(frozen=True)
class SimAlbum(SimItem):
    artist_index: int
    album_type: str
    release_date: str
    release_date_precision: str
    track_indexes: tuple[int, ...]


@dataclass(frozen=True)
class SimTrack(SimItem):
    album_index: int
    artist_indexes: tuple[int, ...]
    duration_ms: int
    explicit: bool
    isrc: str
    track_number: int


@dataclass
class Catalogue:
    seed: int
    artists: list[SimArtist] = field(default_factory=list)
    albums: list[SimAlbum] = field(default_factory=list)
    tracks: list[SimTrack] = field(default_factory=list)
    by_id: dict[str, tuple[str, int]] = field(default_factory=dict)  # spotify id -> (kind, index)
    _cum_weights: list[float] = field(default_factory=list)

    @classmethod
    def generate(cls, seed: int, *, n_artists: int = 300, albums_per_artist: int = 3) -> Catalogue:
        rng = random.Random(f"catalogue:{seed}")
        cat = cls(seed=seed)
        for a in range(n_artists):
            if rng.random() < 0.55:
                name = f"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}s"
            else:
                name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
            genres = tuple(sorted(rng.sample(GENRES, rng.randint(1, 3))))
            cat.artists.append(SimArtist(spotify_id(seed, "artist", a), name, genres))

        for a in range(n_artists):
            for _ in range(rng.randint(1, albums_per_artist * 2 - 1)):
                album_index = len(cat.albums)
                kind = rng.choices(("album", "single", "compilation"), (0.6, 0.35, 0.05))[0]
                n_tracks = 1 if kind == "single" and rng.random() < 0.6 else rng.randint(4, 14)
                year = rng.randint(1968, 2026)
                precision = rng.choices(("day", "month", "year"), (0.85, 0.05, 0.10))[0]
                date = {"day": f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                        "month": f"{year}-{rng.randint(1, 12):02d}", "year": str(year)}[precision]
                first_track = len(cat.tracks)
                album_name = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
                for t in range(n_tracks):
                    artists = [a]
                    if rng.random() < 0.12:
                        featured = rng.randrange(n_artists)
                        if featured != a:
                            artists.append(featured)
                    index = len(cat.tracks)
                    cat.tracks.append(SimTrack(
                        id=spotify_id(seed, "track", index),
                        name=album_name if n_tracks == 1 else f"{rng.choice(_NOUNS)} {rng.choice(_NOUNS).lower()}",
                        album_index=album_index,
                        artist_indexes=tuple(artists),
                        duration_ms=rng.randint(95_000, 330_000),
                        explicit=rng.random() < 0.15,
                        isrc=f"QZSIM{year % 100:02d}{index:05d}",
                        track_number=t + 1,
                    ))
                cat.albums.append(SimAlbum(
                    id=spotify_id(seed, "album", album_index),
                    name=album_name,
                    artist_index=a,
                    album_type=kind,
                    release_date=date,
                    release_date_precision=precision,
                    track_indexes=tuple(range(first_track, len(cat.tracks))),
                ))

        # Popularity: a seeded shuffle decides which tracks are the hits.
        ranks = list(range(len(cat.tracks)))
        rng.shuffle(ranks)
        weights = [0.0] * len(cat.tracks)
        for rank, track_index in enumerate(ranks, start=1):
            weights[track_index] = 1.0 / rank
        cat._cum_weights = list(accumulate(weights))
        for kind, items in (("artists", cat.artists), ("albums", cat.albums), ("tracks", cat.tracks)):
            for i, item in enumerate(items):
                cat.by_id[item.id] = (kind, i)
        return cat

    def popular_track(self, rng: random.Random) -> int:
        """A track index drawn with Zipf-like popularity."""
        x = rng.random() * self._cum_weights[-1]
        return min(bisect.bisect_left(self._cum_weights, x), len(self.tracks) - 1)

    def lookup(self, kind: str, spotify_id_: str) -> int | None:
        found = self.by_id.get(spotify_id_)
        return found[1] if found and found[0] == kind else None
