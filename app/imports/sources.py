"""Opening what a user uploaded, safely: a zip as Spotify sends it (any folder layout) or
loose JSON files. Nothing is ever extracted to disk; zip members are streamed.

Refused with a message that says what is wrong (`InputError`), before anything is written:
neither zip nor JSON, a damaged or truncated zip, a password-protected zip, unsafe member
names (absolute paths, `..`), a zip bomb (too much data in total, or a member that
expands more than `max_ratio`×), JSON that is not a list of plays, JSON cut short, JSON
nested deeper or holding longer values than any streaming history does.

Memory stays bounded whatever the upload: files are parsed as streams, one row at a
time, and every byte passes `_StructureGuard` before the parser sees it. The guard
matters because ijson's memory grows with the square of the nesting depth (40 KB of
nested brackets takes about a gigabyte): it refuses deep nesting and overlong strings
while they are still a few kilobytes of input.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
import zlib
from itertools import accumulate
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Callable, Iterator

import ijson

from . import services
from .formats import ACCOUNT, EXTENDED, IGNORED, NATIVE, NATIVE_FORMAT
from .formats import classify as classify_spotify
from .formats import sniff

ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"

# Streaming histories are a list of flat objects: two levels. Nothing needs more than a few.
MAX_DEPTH = 16
# No value in a streaming history comes near this (names are at most a few hundred bytes).
MAX_STRING_BYTES = 1024**2
# Nor any line of a CSV or JSON-lines history (a row is a few hundred bytes).
MAX_LINE_BYTES = 1024**2


class InputError(Exception):
    """Bad input: the message is for the person who uploaded it."""


WHAT_TO_UPLOAD = ("Upload my_spotify_data.zip as Spotify sent it (or the JSON files inside it), a Last.fm export "
                  "(CSV or JSON), a ListenBrainz export (zip or JSON), a Maloja export, Apple's Apple Music Play "
                  "Activity.csv or Google Takeout's watch-history.json.")


def classify(name: str) -> tuple[str, str | None]:
    """(kind, why it is ignored) from a file's name: another service's history, else Spotify's."""
    kind = services.classify(name)
    return (kind, None) if kind else classify_spotify(name)


def _member(name: str, kind: str, size: int, reason: str | None, opener, prefix: str | None = None) -> Member:
    layout, default_prefix = services.LAYOUT.get(kind, (services.JSON, "plays.item" if kind == NATIVE else "item"))
    if kind == services.LISTENBRAINZ and name.lower().endswith(".jsonl"):
        layout = services.JSONL
    return Member(name, kind, size, reason, opener if kind != IGNORED else None, layout, prefix or default_prefix)


@dataclass(frozen=True)
class Limits:
    max_uncompressed_bytes: int = 4 * 1024**3
    max_ratio: int = 100  # Spotify's JSON compresses about 10×; bombs, thousands×


@dataclass
class Member:
    """One file to read (or to list as ignored) from an upload."""

    name: str
    kind: str  # EXTENDED, ACCOUNT, NATIVE, one of services.KINDS, or IGNORED
    size: int
    reason: str | None = None  # why ignored
    _open: Callable[[], IO[bytes]] | None = field(default=None, repr=False)
    layout: str = services.JSON  # JSON (items at `prefix`), JSONL or CSV
    prefix: str = "item"

    def open(self) -> IO[bytes]:
        assert self._open is not None, "ignored files are never opened"
        return self._open()


class Upload:
    """The members of one uploaded file; close() releases the zip, if any."""

    def __init__(self, path: Path, display_name: str, limits: Limits):
        self.display_name = display_name
        self._zip: zipfile.ZipFile | None = None
        with open(path, "rb") as f:
            head = f.read(4096)
        text_start = _first_character(head)
        if head[:4] in (ZIP_MAGIC, EMPTY_ZIP_MAGIC):
            self.members = self._zip_members(path, limits)
        elif text_start in ("[", "{"):
            self.members = [self._json_member(path)]
        elif looks_like_csv(head, display_name):
            self.members = [self._csv_member(path)]
        else:
            raise InputError(f"{display_name} is not a zip, JSON or CSV file. {WHAT_TO_UPLOAD}")

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def _json_member(self, path: Path) -> Member:
        kind, reason = classify(self.display_name)
        prefix = None
        if kind == IGNORED and reason and "never read" in reason:
            # An unfamiliar name: look at the first row (or the object's keys) before giving up on it.
            with open(path, "rb") as f:
                if _first_character(f.read(4096)) == "{":
                    f.seek(0)
                    kind = _object_kind(f, self.display_name)
                else:
                    f.seek(0)
                    first = _first_row(f, self.display_name)
                    kind = sniff(first) or services.sniff_json(first) or IGNORED
                    if kind == services.LASTFM_JSON:
                        prefix = services.lastfm_prefix(first)
            if kind != IGNORED:
                reason = None
        elif kind == services.LASTFM_JSON or kind == services.YOUTUBE_MUSIC:
            with open(path, "rb") as f:
                prefix = services.lastfm_prefix(_first_row(f, self.display_name)) \
                    if kind == services.LASTFM_JSON else None
        return _member(self.display_name, kind, path.stat().st_size, reason,
                       (lambda: open(path, "rb")) if kind != IGNORED else None, prefix)

    def _csv_member(self, path: Path) -> Member:
        kind, reason = classify(self.display_name)
        with open(path, "rb") as f:
            header = _first_csv_row(f, self.display_name)
        sniffed = services.sniff_csv(header) if header else None
        if kind == IGNORED or (kind in services.KINDS and services.LAYOUT[kind][0] != services.CSV):
            kind, reason = (sniffed, None) if sniffed else (IGNORED, "a CSV file of no history this server knows")
        if kind == IGNORED:
            raise InputError(f"{self.display_name} is a CSV file, but not one this server can read: its first row "
                             f"should be the header of a Last.fm export (uts, utc_time, artist, …) or of Apple's "
                             f"Apple Music Play Activity.csv. {WHAT_TO_UPLOAD}")
        return _member(self.display_name, kind, path.stat().st_size, reason, lambda: open(path, "rb"))

    def _zip_members(self, path: Path, limits: Limits) -> list[Member]:
        name = self.display_name
        try:
            archive = zipfile.ZipFile(path)
            infos = archive.infolist()
        except (zipfile.BadZipFile, EOFError, OSError) as exc:
            raise InputError(f"{name} is damaged or incomplete ({exc}); was the download interrupted? "
                             "Download it again from Spotify and upload the new copy.") from None
        self._zip = archive
        members, to_read = [], 0
        for info in infos:
            if info.is_dir():
                continue
            path_parts = PurePosixPath(info.filename.replace("\\", "/"))
            if info.filename.startswith(("/", "\\")) or ".." in path_parts.parts or ":" in path_parts.parts[0]:
                raise InputError(f"{name} contains a file with an unsafe name ({info.filename!r}); "
                                 "this is not a zip Spotify made.")
            kind, reason = classify(info.filename)
            if kind == IGNORED:
                members.append(Member(info.filename, kind, info.file_size, reason))
                continue
            if info.flag_bits & 0x1:
                raise InputError(f"{name} is password-protected. Spotify's exports are not; unzip it yourself and "
                                 "upload the JSON files inside.")
            if info.compress_size and info.file_size > 1024**2 and info.file_size / info.compress_size > limits.max_ratio:
                raise InputError(f"{name} looks like a zip bomb: {info.filename} would expand "
                                 f"{info.file_size // max(info.compress_size, 1)}-fold.")
            to_read += info.file_size
            opener = (lambda info=info: _Capped(archive.open(info), info.file_size, info.filename))
            prefix = None
            if kind == services.LASTFM_JSON:
                with opener() as f:
                    prefix = services.lastfm_prefix(_first_row(f, info.filename))
            members.append(_member(info.filename, kind, info.file_size, None, opener, prefix))
        if to_read > limits.max_uncompressed_bytes:
            raise InputError(f"{name} would expand to {to_read / 1024**3:.1f} GB of JSON, more than the "
                             f"{limits.max_uncompressed_bytes / 1024**3:.1f} GB this server accepts.")
        return members


@dataclass
class Meter:
    """How many bytes of a member have been read so far (for progress)."""

    bytes: int = 0


def rows(member: Member, meter: Meter | None = None, prefix: str | None = None) -> Iterator:
    """The rows of a history file, read incrementally: the items of its top-level JSON
    list, or with `prefix` (ijson's path, e.g. "plays.item") those of a list inside the
    top-level object; a CSV file's rows as dicts by its header; a JSON-lines file's
    objects. Raises InputError for a file of the wrong shape, cut short or otherwise not
    valid."""
    meter = meter or Meter()
    if member.layout == services.CSV:
        yield from _csv_rows(member, meter)
        return
    if member.layout == services.JSONL:
        yield from _jsonl_rows(member, meter)
        return
    prefix = prefix or member.prefix
    # Everything inside the try: a zip member's checksum is verified when its last bytes
    # are read, which for a small file is the first read of all.
    try:
        with member.open() as raw:
            stream = io.BufferedReader(_StructureGuard(_Metered(raw, meter), member.name),
                                       buffer_size=1024 * 1024)
            first = _first_character(stream.peek(4096))
            if prefix.startswith("item") and first != "[":
                raise InputError(f"{member.name} is not a listening history: expected a list of plays, "
                                 f"found {'an object' if first == '{' else 'something else'}.")
            if not prefix.startswith("item") and first != "{":
                raise InputError(f"{member.name} is not a listening history: expected an object.")
            yield from ijson.items(stream, prefix)
    except ijson.JSONError as exc:
        raise InputError(f"{member.name} is damaged: it is not valid JSON or it ends early ({exc}).") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{member.name} is damaged: it holds bytes that are not UTF-8 text (at byte {exc.start} of "
                         "a piece of text). Spotify writes UTF-8; download the export again.") from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise InputError(f"{member.name} could not be read from the zip ({exc}); the zip is damaged. Download it "
                         "again from Spotify and upload the new copy.") from None


class _Passing(io.RawIOBase):
    """A stream read through to `self._inner` (set by the subclass), which it closes."""

    _inner: IO[bytes]

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._inner.close()
        super().close()


class _Metered(_Passing):
    def __init__(self, inner: IO[bytes], meter: Meter):
        self._inner, self._meter = inner, meter

    def readinto(self, buffer) -> int:
        data = self._inner.read(len(buffer))
        buffer[:len(data)] = data
        self._meter.bytes += len(data)
        return len(data)


class _StructureGuard(_Passing):
    """Passes a JSON byte stream to the parser, raising InputError as soon as nesting goes
    deeper than MAX_DEPTH or one string runs longer than MAX_STRING_BYTES.

    It changes one thing: an escaped lone surrogate (`\\ud800` without its pair) becomes
    `\\uffff`, a noncharacter no Spotify file holds, so that the row reader can count that
    row as unreadable. Left alone, ijson's C parser either replaces it with "?" or emits
    bytes Python cannot decode, which fails the whole file.

    Works a chunk at a time with bytes operations that run in C (a character loop in
    Python would cost more than the import): escapes go first (`\\x` pairs, so an escaped
    quote cannot end a string), then everything but quotes and brackets; what remains of
    each string is its quotes and any brackets inside it, and strings are removed whole,
    leaving the brackets that are structure. A string still open at the end of a chunk is
    carried to the next, and so are the last bytes of a chunk that may be half an escape."""

    _TOKENS = re.compile(rb"\\(?:(?P<pair>u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})"
                         rb"|(?P<lone>u[dD][89a-fA-F][0-9a-fA-F]{2})|.)", re.S)
    _LONGEST_TOKEN = 12  # a surrogate pair, \\ud83c\\udfb5
    _STRING = re.compile(rb'"[^"]*"')
    _DROP = bytes(b for b in range(256) if b not in b'[]{}"\\')
    _DELTA = [0] * 256
    _DELTA[ord("[")] = _DELTA[ord("{")] = 1
    _DELTA[ord("]")] = _DELTA[ord("}")] = -1

    def __init__(self, inner: IO[bytes], name: str):
        self._inner, self._name = inner, name
        self._depth = 0
        self._open_string = b""  # what is left of a string still open at the end of the last chunk
        self._string_bytes = 0  # input bytes that open string has spanned so far (at least)
        self._held = b""  # the end of the last chunk read, possibly half an escape
        self._ready = memoryview(b"")  # checked and rewritten, not yet handed to the parser
        self._eof = False

    def readinto(self, buffer) -> int:
        while not self._ready and not self._eof:
            more = self._inner.read(max(len(buffer), 64 * 1024))
            self._eof = not more
            ready, self._held = self._rewrite(self._held + more, self._eof)
            if ready:
                self._check(ready)
            self._ready = memoryview(ready)
        n = min(len(buffer), len(self._ready))
        buffer[:n] = self._ready[:n]
        self._ready = self._ready[n:]
        return n

    def _rewrite(self, data: bytes, eof: bool) -> tuple[bytes, bytes]:
        """(what can be passed on, with lone surrogates rewritten; what must wait for more)."""
        if b"\\" not in data:
            return data, b""
        tokens = list(self._TOKENS.finditer(data))
        cut = len(data)
        if not eof:
            if data.endswith(b"\\") and (not tokens or tokens[-1].end() != len(data)):
                cut -= 1  # a backslash whose escaped byte is still to come
            # An escape that starts this near the end may be half of one, or half a pair.
            tail = [t.start() for t in tokens if t.start() >= len(data) - self._LONGEST_TOKEN]
            cut = min([cut, *tail])
        lone = [t for t in tokens if t.lastgroup == "lone" and t.end() <= cut]
        if not lone:
            return data[:cut], data[cut:]
        out = bytearray(data[:cut])
        for token in lone:
            out[token.start():token.end()] = b"\\uffff"
        return bytes(out), data[cut:]

    def _check(self, data: bytes) -> None:
        # `data` never ends inside an escape (_rewrite holds those back), so each escape is
        # removed whole here, and an escaped quote cannot end a string.
        text = self._TOKENS.sub(b"", data) if b"\\" in data else data
        chunk = text.translate(None, self._DROP)
        # The string left open by the last chunk goes on unless this chunk has a quote.
        still_the_same = bool(self._open_string) and b'"' not in chunk
        # Quotes alternate open/close, so adjacent ones are an empty string or the seam
        # between two strings: dropping them changes no bracket's inside-or-outside.
        kept = (self._open_string + chunk).replace(b'""', b"")
        rest = self._STRING.sub(b"", kept) if b'"' in kept else kept
        quote = rest.find(b'"')
        structure, self._open_string = (rest, b"") if quote < 0 else (rest[:quote], rest[quote:])
        if self._open_string:
            self._string_bytes = self._string_bytes + len(data) if still_the_same else len(data)
            if self._string_bytes > MAX_STRING_BYTES:
                raise InputError(f"{self._name} is not a Spotify streaming history: it holds a value longer than "
                                 f"{MAX_STRING_BYTES // 1024**2} MB.")
        if structure:
            deepest = max(accumulate(map(self._DELTA.__getitem__, structure), initial=self._depth))
            if deepest > MAX_DEPTH:
                raise InputError(f"{self._name} is not a Spotify streaming history: its data is nested more than "
                                 f"{MAX_DEPTH} levels deep, where Spotify's files have two.")
            self._depth += sum(map(self._DELTA.__getitem__, structure))


class _Capped(_Passing):
    """A zip member stream that stops a member from producing more than it declared."""

    def __init__(self, inner: IO[bytes], declared: int, name: str):
        self._inner, self._left, self._name = inner, declared + 1024, name

    def readinto(self, buffer) -> int:
        data = self._inner.read(len(buffer))
        self._left -= len(data)
        if self._left < 0:
            raise InputError(f"{self._name} holds more data than its zip entry declares: refusing it.")
        buffer[:len(data)] = data
        return len(data)


def looks_like_csv(head: bytes, name: str) -> bool:
    """A CSV file: named so, or text whose first row is the header of one this server reads
    (JSON and zips are recognised first)."""
    if name.lower().endswith(".csv"):
        return True
    line = head.lstrip(b"\xef\xbb\xbf").split(b"\n", 1)[0]
    try:
        cells = next(csv.reader([line.decode("utf-8")]), [])
    except (UnicodeDecodeError, csv.Error):
        return False
    return services.sniff_csv(cells) is not None


def _object_kind(stream: IO[bytes], name: str) -> str:
    """A JSON file that is an object: Audiospective's export, Maloja's, or ListenBrainz's
    JSON lines (an object per line)."""
    head = stream.read(MAX_LINE_BYTES)
    stream.seek(0)
    if top_level_value(stream, name, "format") == NATIVE_FORMAT:
        return NATIVE
    stream.seek(0)
    if top_level_value(stream, name, "maloja", kinds=("start_map",)) is not None:
        return services.MALOJA
    first_line = head.split(b"\n", 1)[0]
    try:
        first = json.loads(first_line)
    except (ValueError, RecursionError):
        return IGNORED
    return services.LISTENBRAINZ if services.sniff_json(first) == services.LISTENBRAINZ else IGNORED


def _first_csv_row(stream: IO[bytes], name: str) -> list[str] | None:
    """The first row's cells (its header, usually): only the first line is decoded, so a
    damaged byte further down is reported where it is, when the rows are read."""
    line = stream.readline(MAX_LINE_BYTES)
    try:
        return next(csv.reader([line.decode("utf-8-sig", errors="replace")]), None)
    except csv.Error:
        return None


def _csv_rows(member: Member, meter: Meter) -> Iterator[dict]:
    to_dict = services.CsvRows(member.kind)
    line = 0
    try:
        with member.open() as raw:
            text = io.TextIOWrapper(io.BufferedReader(_LineGuard(_Metered(raw, meter), member.name)),
                                    encoding="utf-8-sig", newline="")
            for line, cells in enumerate(csv.reader(text, strict=False), start=1):
                row = to_dict(cells)
                if row is not None:
                    yield row
    except csv.Error as exc:
        raise InputError(f"{member.name} is damaged at line {line + 1}: {exc}.") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{member.name} is damaged: it holds bytes that are not UTF-8 text (near line {line + 1}, "
                         f"{exc.reason}). Export it again.") from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise InputError(f"{member.name} could not be read from the zip ({exc}); the zip is damaged.") from None


def _jsonl_rows(member: Member, meter: Meter) -> Iterator:
    """One object per line; a line that is not one is a row that cannot be read (None)."""
    try:
        with member.open() as raw:
            stream = io.BufferedReader(_LineGuard(_Metered(raw, meter), member.name), buffer_size=1024 * 1024)
            for line in stream:
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except (ValueError, RecursionError):
                    yield None
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise InputError(f"{member.name} could not be read from the zip ({exc}); the zip is damaged.") from None


class _LineGuard(_Passing):
    """Passes a text stream on, raising InputError when a line runs longer than
    MAX_LINE_BYTES: the csv and line readers hold a whole line (and a CSV line may hold
    millions of empty fields), so memory stays bounded."""

    def __init__(self, inner: IO[bytes], name: str):
        self._inner, self._name, self._since_newline = inner, name, 0

    def readinto(self, buffer) -> int:
        data = self._inner.read(min(len(buffer), MAX_LINE_BYTES))  # so no line hides inside one read
        first = data.find(b"\n")
        if first < 0:
            self._since_newline += len(data)
        else:
            longest = self._since_newline + first
            self._since_newline = len(data) - data.rfind(b"\n") - 1
            if longest > MAX_LINE_BYTES:
                self._since_newline = longest
        if self._since_newline > MAX_LINE_BYTES:
            raise InputError(f"{self._name} is not a listening history: it has a line longer than "
                             f"{MAX_LINE_BYTES // 1024**2} MB.")
        buffer[:len(data)] = data
        return len(data)


def _first_character(data: bytes) -> str:
    text = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    return chr(text[0]) if text else ""


def top_level_value(stream: IO[bytes], name: str, key: str, *, within: int = 64,
                    kinds: tuple[str, ...] = ("string", "number", "boolean", "null")):
    """The value of `key` in a JSON file's top-level object if it comes among its first
    `within` parse events (scalars only, or the events `kinds` name: "start_map" gives
    None as the value, so test for the key), else None: how a file says what it is."""
    try:
        parser = ijson.parse(io.BufferedReader(_StructureGuard(stream, name), buffer_size=64 * 1024))
        for n, (path, event, value) in enumerate(parser):
            if n == 0 and event != "start_map":
                return None
            if path == key and event in kinds:
                return value if event in ("string", "number", "boolean", "null") else event
            if n >= within:
                return None
    except (ijson.JSONError, UnicodeDecodeError):
        return None
    return None


def _first_row(stream: IO[bytes], name: str):
    try:
        return next(ijson.items(io.BufferedReader(_StructureGuard(stream, name), buffer_size=64 * 1024), "item"), None)
    except ijson.JSONError:
        raise InputError(f"{name} is damaged: it is not valid JSON.") from None


__all__ = ["ACCOUNT", "EXTENDED", "IGNORED", "InputError", "Limits", "Member", "Meter", "Upload", "rows"]
