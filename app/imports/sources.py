"""Opening what a user uploaded, safely: a zip as Spotify sends it (any folder layout) or
loose JSON files. Nothing is ever extracted to disk; zip members are streamed.

Refused with a message that says what is wrong (`InputError`), before anything is written:
neither zip nor JSON, a damaged or truncated zip, a password-protected zip, unsafe member
names (absolute paths, `..`), a zip bomb (too much data in total, or a member that
expands more than `max_ratio`×), JSON that is not a list of plays, JSON cut short.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Callable, Iterator

import ijson

from .formats import ACCOUNT, EXTENDED, IGNORED, classify, sniff

ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"


class InputError(Exception):
    """Bad input: the message is for the person who uploaded it."""


@dataclass(frozen=True)
class Limits:
    max_uncompressed_bytes: int = 4 * 1024**3
    max_ratio: int = 100  # Spotify's JSON compresses about 10×; bombs, thousands×


@dataclass
class Member:
    """One file to read (or to list as ignored) from an upload."""

    name: str
    kind: str  # EXTENDED, ACCOUNT or IGNORED
    size: int
    reason: str | None = None  # why ignored
    _open: Callable[[], IO[bytes]] | None = field(default=None, repr=False)

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
        else:
            raise InputError(f"{display_name} is neither a zip file nor a JSON file. Upload my_spotify_data.zip as "
                             "Spotify sent it, or the JSON files inside it.")

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def _json_member(self, path: Path) -> Member:
        kind, reason = classify(self.display_name)
        if kind == IGNORED and reason and "never read" in reason:
            # An unfamiliar name: look at the first row before giving up on it.
            with open(path, "rb") as f:
                kind = sniff(_first_row(f, self.display_name)) or IGNORED
            if kind != IGNORED:
                reason = None
        return Member(self.display_name, kind, path.stat().st_size, reason,
                      (lambda: open(path, "rb")) if kind != IGNORED else None)

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
            members.append(Member(info.filename, kind, info.file_size, None,
                                  lambda info=info: _Capped(archive.open(info), info.file_size, info.filename)))
        if to_read > limits.max_uncompressed_bytes:
            raise InputError(f"{name} would expand to {to_read / 1024**3:.1f} GB of JSON, more than the "
                             f"{limits.max_uncompressed_bytes / 1024**3:.1f} GB this server accepts.")
        return members


@dataclass
class Meter:
    """How many bytes of a member have been read so far (for progress)."""

    bytes: int = 0


def rows(member: Member, meter: Meter | None = None) -> Iterator:
    """The rows of a streaming-history file, read incrementally. Raises InputError for a file
    that is not a JSON list, or is cut short or otherwise not valid JSON."""
    with member.open() as raw:
        stream = io.BufferedReader(_Metered(raw, meter or Meter()), buffer_size=1024 * 1024)
        first = _first_character(stream.peek(4096))
        if first != "[":
            raise InputError(f"{member.name} is not a Spotify streaming history: expected a list of plays, "
                             f"found {'an object' if first == '{' else 'something else'}.")
        try:
            yield from ijson.items(stream, "item")
        except ijson.JSONError as exc:
            raise InputError(f"{member.name} is damaged: it is not valid JSON or it ends early ({exc}).") from None
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise InputError(f"{member.name} could not be read from the zip ({exc}); the zip is damaged.") from None


class _Metered(io.RawIOBase):
    def __init__(self, inner: IO[bytes], meter: Meter):
        self._inner, self._meter = inner, meter

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._inner.read(len(buffer))
        buffer[:len(data)] = data
        self._meter.bytes += len(data)
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


class _Capped(io.RawIOBase):
    """A zip member stream that stops a member from producing more than it declared."""

    def __init__(self, inner: IO[bytes], declared: int, name: str):
        self._inner, self._left, self._name = inner, declared + 1024, name

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._inner.read(len(buffer))
        self._left -= len(data)
        if self._left < 0:
            raise InputError(f"{self._name} holds more data than its zip entry declares: refusing it.")
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


def _first_character(data: bytes) -> str:
    text = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    return chr(text[0]) if text else ""


def _first_row(stream: IO[bytes], name: str):
    try:
        return next(ijson.items(stream, "item"), None)
    except ijson.JSONError:
        raise InputError(f"{name} is damaged: it is not valid JSON.") from None


__all__ = ["ACCOUNT", "EXTENDED", "IGNORED", "InputError", "Limits", "Member", "Meter", "Upload", "rows"]
