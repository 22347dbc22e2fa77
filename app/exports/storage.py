"""An export's file in Postgres (`export_chunks`): written compressed in CHUNK_BYTES pieces
as it is produced, and read back one piece at a time, so neither the job nor a download
holds more than a piece of it, whatever the size of the archive."""

from __future__ import annotations

import io
import zlib
from typing import Iterator

import psycopg

CHUNK_BYTES = 1024 * 1024


class ChunkWriter(io.RawIOBase):
    """A binary file (write-only, not seekable) whose bytes become chunks of one export,
    inserted on `conn` in its transaction. With `gzip`, what is written is compressed
    first (the Spotify-shape zip is compressed already). `finish()` writes the rest."""

    def __init__(self, conn: psycopg.Connection, export_id: int, *, gzip: bool):
        super().__init__()
        self.conn, self.export_id = conn, export_id
        # wbits 31: a gzip stream, so what is stored is also a valid .gz file.
        self._compressor = zlib.compressobj(6, zlib.DEFLATED, 31) if gzip else None
        self._buffer = bytearray()
        self._seq = 0
        self.bytes_in = 0  # as written (the file's size as downloaded)
        self.bytes_stored = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        data = bytes(data)
        self.bytes_in += len(data)
        self._buffer += self._compressor.compress(data) if self._compressor else data
        if len(self._buffer) >= CHUNK_BYTES:
            self._flush()
        return len(data)

    def tell(self) -> int:  # zipfile asks where it is when the stream is not seekable
        return self.bytes_in

    def finish(self) -> None:
        if self._compressor:
            self._buffer += self._compressor.flush()
            self._compressor = None
        self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        self.conn.execute("INSERT INTO export_chunks (export_id, seq, data) VALUES (%s, %s, %s)",
                          (self.export_id, self._seq, bytes(self._buffer)))
        self.bytes_stored += len(self._buffer)
        self._seq += 1
        self._buffer.clear()


def stored_chunks(conn: psycopg.Connection, export_id: int) -> Iterator[bytes]:
    """The stored bytes, one chunk (one query) at a time."""
    seq = 0
    while True:
        row = conn.execute("SELECT data FROM export_chunks WHERE export_id = %s AND seq = %s",
                           (export_id, seq)).fetchone()
        if row is None:
            return
        yield row[0]
        seq += 1


def gunzipped(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The file as it was written, from its gzip chunks (the output of one chunk is bounded
    by the compression ratio: text compresses ~10x, so a 1 MB chunk gives ~10 MB at most;
    read in slices to keep it smaller)."""
    decompressor = zlib.decompressobj(31)
    for chunk in chunks:
        data = decompressor.decompress(chunk, CHUNK_BYTES)
        while data:
            yield data
            data = decompressor.decompress(decompressor.unconsumed_tail, CHUNK_BYTES)
    tail = decompressor.flush()
    if tail:
        yield tail
