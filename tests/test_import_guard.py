"""The stream guard in front of the JSON parser (app/imports/sources.py: _StructureGuard),
checked against plain reference readers on generated JSON, in chunks of every size."""

from __future__ import annotations

import io
import json
import random

import pytest

from app.imports import sources
from app.imports.sources import InputError, _StructureGuard


class Trickle(io.RawIOBase):
    """A stream that hands out a few bytes at a time, so chunks split everything."""

    def __init__(self, data: bytes, rng: random.Random):
        self._data, self._rng = io.BytesIO(data), rng

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self._data.read(self._rng.randint(1, 20))


def through_guard(data: bytes, rng: random.Random) -> bytes:
    guard, out, buffer = _StructureGuard(Trickle(data, rng), "f.json"), bytearray(), bytearray(rng.randint(1, 30))
    while n := guard.readinto(buffer):
        out += buffer[:n]
    return bytes(out)


def reference_depth_and_longest_string(text: str) -> tuple[int, int]:
    depth = deepest = longest = length = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            length += 1
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string, longest = False, max(longest, length)
        elif ch == '"':
            in_string, length = True, 0
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest, longest


def random_json(rng: random.Random, depth: int):
    """Nesting up to `depth` (one deep branch, a few shallow ones), and strings full of
    brackets, quotes and backslashes."""
    if depth and rng.random() < 0.9:
        children = [random_json(rng, depth - 1)] + [random_json(rng, rng.randint(0, 2)) for _ in range(rng.randint(0, 2))]
        if rng.random() < 0.5:
            return children
        return {f"{rng.choice(['a', '[', ']', '{', '}'])}{i}": child for i, child in enumerate(children)}
    return "".join(rng.choice('ab[]{}"\\/\n') for _ in range(rng.randint(0, 8)))


def test_depth_and_string_length_are_judged_as_a_parser_would(monkeypatch):
    monkeypatch.setattr(sources, "MAX_STRING_BYTES", 60)
    rng = random.Random(2)
    refused = {"deep": 0, "long": 0}
    for _ in range(3000):
        value = random_json(rng, rng.randint(0, 25))
        if rng.random() < 0.2:
            value = [value, "x" * rng.randint(0, 200)]
        data = json.dumps(value).encode()
        deepest, longest = reference_depth_and_longest_string(data.decode())
        try:
            assert through_guard(data, rng) == data  # passed on unchanged
            verdict = "ok"
        except InputError as exc:
            verdict = "deep" if "nested" in str(exc) else "long"
            refused[verdict] += 1
        assert (verdict == "deep") == (deepest > sources.MAX_DEPTH) or verdict == "long"
        if verdict == "long":  # chunks make the length an estimate, never by more than a chunk or two
            assert longest > 60 - 50
        elif verdict == "ok":
            assert longest <= 60 + 60
    assert refused["deep"] > 100 and refused["long"] > 100  # both rules were exercised


HIGH, LOW = ["\\ud800", "\\udbff", "\\uD83C"], ["\\udc00", "\\uDFB5"]


def test_lone_surrogates_become_a_noncharacter_and_pairs_stay():
    rng = random.Random(5)

    def piece() -> str:
        return rng.choice([rng.choice(HIGH) + rng.choice(LOW), rng.choice(HIGH), rng.choice(LOW), "\\\\", '\\"',
                           "\\u0041", "a", "[", "é", "{"])

    rewritten = 0
    for _ in range(3000):
        text = "[" + ",".join('"' + "".join(piece() for _ in range(rng.randint(0, 8))) + '"'
                              for _ in range(rng.randint(1, 5))) + "]"
        out = through_guard(text.encode(), rng)
        assert len(out) == len(text.encode())
        expected = []
        for value in json.loads(text):  # Python's json keeps lone surrogates: replace them here
            chars, i = [], 0
            while i < len(value):
                if "\ud800" <= value[i] <= "\udbff" and i + 1 < len(value) and "\udc00" <= value[i + 1] <= "\udfff":
                    chars += value[i:i + 2]
                    i += 2
                    continue
                chars.append("\uffff" if "\ud800" <= value[i] <= "\udfff" else value[i])
                i += 1
            expected.append("".join(chars))
        assert json.loads(out.decode()) == expected
        rewritten += sum(v.count("\uffff") for v in expected)
    assert rewritten > 1000


@pytest.mark.parametrize("data", [
    b"[" * 100_000 + b"]" * 100_000,
    b"[" + b"{" * 17 + b"}" * 17 + b"]",
    b'[{"a": ' * 20 + b"1" + b"}]" * 20,
])
def test_deep_nesting_is_refused_early(data):
    guard = _StructureGuard(io.BytesIO(data), "f.json")
    with pytest.raises(InputError, match="nested more than 16 levels deep"):
        while guard.readinto(bytearray(4096)):
            pass


def test_a_spotify_shaped_file_passes_unchanged():
    rows = [{"ts": "2024-05-01T12:00:00Z", "master_metadata_track_name": 'A "quoted" [name] \\ {x}', "n": i}
            for i in range(5000)]
    data = json.dumps(rows, ensure_ascii=False).encode()
    assert through_guard(data, random.Random(1)) == data
