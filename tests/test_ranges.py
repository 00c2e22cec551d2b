"""Byte ranges: reading a file range by range gives exactly what a read of the whole file
gives (the brute-force reference), for any cut points, in lenient and in strict mode."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etagger import conll, ranges

COLUMNS = ("word", "tag")
LINES = st.sampled_from(
    [
        b"John B-PER\n",
        b"Smith I-PER\n",
        b"ran O\n",
        b"\xc3\xa9t\xc3\xa9 O\n",  # good token lines
        b"\n",
        b"  \n",
        b"\t\n",  # blank lines
        b"-DOCSTART- O\n",
        b"-DOCSTART-\n",  # document markers (or malformed rows mid-sentence)
        b"one\n",
        b"a b c\n",
        b"\xff\xfe O\n",  # a wrong column count, bytes that are not UTF-8
        b"John X-FOO\n",  # a malformed tag
    ]
)


@dataclasses.dataclass(frozen=True)
class Opts:
    columns: tuple[str, ...] = COLUMNS
    lenient: bool = True
    max_sentence_tokens: int = 4


def _cut(path: Path, text: bytes, cuts: list[int], opts: Opts) -> list[ranges.FileRange]:
    """The file's ranges for the given cut points, numbered by their census."""
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(text)}), len(text)]
    plain = [
        ranges.FileRange(str(path), "conll", a, b, 0, i, len(bounds) - 1)
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))
    ]
    return ranges.numbered(plain, [ranges.census(r, opts) for r in plain])


def _read_whole(path: Path, opts: Opts):
    stats = conll.ReadStats()
    try:
        return (
            list(conll.read_conll(path, COLUMNS, opts.lenient, opts.max_sentence_tokens, stats)),
            None,
            stats,
        )
    except conll.ConllFormatError as e:
        return None, str(e), stats


def _read_ranges(parts: list[ranges.FileRange], opts: Opts):
    stats, out = conll.ReadStats(), []
    try:
        for r in parts:
            out += list(ranges.conll_sentences(r, opts, stats))
    except conll.ConllFormatError as e:
        return None, str(e), stats
    return out, None, stats


@settings(
    max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.lists(LINES, max_size=40),
    last=st.sampled_from([b"", b"Smith I-PER", b"  ", b"-DOCSTART-"]),
    cuts=st.lists(st.integers(0, 400), max_size=6),
    lenient=st.booleans(),
    window=st.sampled_from([1, 7, 1 << 16]),
)
def test_ranges_read_what_the_whole_file_reads(
    tmp_path, monkeypatch, lines, last, cuts, lenient, window
):
    monkeypatch.setattr(conll, "SYNC_WINDOW", window)  # tiny windows force the widening path
    text = b"".join(lines) + last  # the last line may lack its newline
    path = tmp_path / "f.txt"
    path.write_bytes(text)
    opts = Opts(lenient=lenient)
    whole, whole_error, whole_stats = _read_whole(path, opts)
    parts, part_error, part_stats = _read_ranges(_cut(path, text, cuts, opts), opts)
    assert part_error == whole_error
    assert parts == whole
    if lenient:
        assert (part_stats.sentences, part_stats.skipped_sentences, part_stats.skipped_lines) == (
            whole_stats.sentences,
            whole_stats.skipped_sentences,
            whole_stats.skipped_lines,
        )


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"")),
    cuts=st.lists(st.integers(0, 300), max_size=6),
)
def test_raw_ranges_hold_each_line_once_with_its_number(tmp_path, text, cuts):
    path = tmp_path / "raw.txt"
    path.write_bytes(text)
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(text)}), len(text)]
    plain = [
        ranges.FileRange(str(path), "raw", a, b, 0, i, len(bounds) - 1)
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))
    ]
    parts = ranges.numbered(plain, [ranges.census(r, Opts()) for r in plain])
    read = [line for r in parts for line in ranges.raw_lines(r)]
    *complete, last = text.split(b"\n")
    assert read == list(
        enumerate([line + b"\n" for line in complete] + ([last] if last else []), start=1)
    )


def test_plan_cuts_files_into_even_ranges_and_keeps_empty_files(tmp_path):
    planned = ranges.plan(
        [("a.txt", 10), ("b.txt", 0), ("c.txt.gz", 99)],
        {"a.txt": "raw", "b.txt": "raw", "c.txt.gz": "raw"},
        range_bytes=4,
    )
    assert [(r.path, r.start, r.end, r.number, r.ranges_in_file) for r in planned] == [
        ("a.txt", 0, 4, 0, 3),
        ("a.txt", 4, 8, 1, 3),
        ("a.txt", 8, 10, 2, 3),
        ("b.txt", 0, 0, 0, 1),
        ("c.txt.gz", 0, None, 0, 1),
    ]


def test_real_conll_file_in_small_ranges(conll_dir):
    path = conll_dir / "dev.txt"
    opts = Opts(columns=conll.CONLL2003_COLUMNS, lenient=False, max_sentence_tokens=0)
    size = path.stat().st_size
    planned = ranges.plan([(str(path), size)], {str(path): "conll"}, range_bytes=size // 7)
    numbered = ranges.numbered(planned, [ranges.census(r, opts) for r in planned])
    read = [s for r in numbered for s in ranges.conll_sentences(r, opts, conll.ReadStats())]
    assert read == list(conll.read_conll(path))
    assert len(read) == 3250


@pytest.mark.parametrize("text", [b"", b"\n\n", b"-DOCSTART- O\n\n"])
def test_ranges_of_an_empty_file_read_nothing(tmp_path, text):
    path = tmp_path / "e.txt"
    path.write_bytes(text)
    assert [
        s
        for r in _cut(path, text, [1], Opts())
        for s in ranges.conll_sentences(r, Opts(), conll.ReadStats())
    ] == []


def test_a_window_without_a_whole_line_before_the_range_is_widened(tmp_path, monkeypatch):
    """Found by the property test: the range starts just before a sentence whose leading
    blank line the 1-byte window does not hold whole."""
    monkeypatch.setattr(conll, "SYNC_WINDOW", 1)
    text = b"  \nJohn B-PER\n"
    path = tmp_path / "f.txt"
    path.write_bytes(text)
    parts, error, _ = _read_ranges(_cut(path, text, [2], Opts(lenient=False)), Opts(lenient=False))
    assert error is None and parts == list(conll.read_conll(path, COLUMNS, max_sentence_tokens=4))
