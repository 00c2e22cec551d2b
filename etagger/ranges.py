"""Byte ranges of input files, so that many workers share one large file.

A file is cut into ranges of about ``range_bytes``. A raw-text range holds the lines that
start inside it; a CoNLL range the sentences whose paragraph starts inside it
(``conll.read_conll_range``). A first pass over the ranges, the census, counts each range's
newlines and kept sentences; its running sums give every range the number of its first line
and of its first sentence, so each record keeps the line number and sentence index that a
read of the whole file gives it. Compressed files cannot be cut and are one range each.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator, Sequence
from typing import NamedTuple

from apache_beam.io.filesystem import CompressionTypes

from etagger import conll, fsutil


class FileRange(NamedTuple):
    """One range of one input file: bytes [start, end) (end None: to the end)."""

    path: str
    kind: str  # "conll" or "raw"
    start: int
    end: int | None
    file_number: int  # the file's position among the inputs
    number: int  # the range's position in its file
    ranges_in_file: int
    split: str = ""  # preprocess: the split the file belongs to
    first_line: int = 1  # number of the line that holds byte ``start``
    first_index: int = 0  # CoNLL: sentences kept before ``start``

    @property
    def compressed(self) -> bool:
        return self.end is None

    @property
    def name(self) -> str:
        """A name that sorts ranges in input order: FFFFF-RRRRRR."""
        return f"{self.file_number:05d}-{self.number:06d}"


class Census(NamedTuple):
    """What the first pass found in one range."""

    file_number: int
    number: int
    newlines: int
    sentences: int  # CoNLL: sentences kept (a lenient read's count); raw: 0


def plan(
    files: Sequence[tuple[str, int]],
    kinds: dict[str, str],
    range_bytes: int,
    splits: dict[str, str] | None = None,
    whole: Container[str] = (),
    min_ranges: int = 1,
) -> list[FileRange]:
    """Ranges of at most ``range_bytes`` for (path, size) ``files``, at least ``min_ranges``
    per file (if it has that many bytes); an empty file gets one empty range, so that every
    input is seen. ``kinds`` maps a path to "conll" or "raw", ``splits`` to its preprocess
    split; the files in ``whole`` are one range each."""
    if range_bytes < 1:
        raise ValueError(f"range_bytes must be positive, got {range_bytes}")
    ranges = []
    for file_number, (path, size) in enumerate(files):
        split = (splits or {}).get(path, "")
        if CompressionTypes.detect_compression_type(path) != CompressionTypes.UNCOMPRESSED:
            ranges.append(FileRange(path, kinds[path], 0, None, file_number, 0, 1, split))
            continue
        count = 1 if path in whole else max(1, min(size, max(min_ranges, -(-size // range_bytes))))
        step = -(-size // count) if size else 0
        for number in range(count):
            start, end = number * step, min(size, (number + 1) * step)
            ranges.append(
                FileRange(path, kinds[path], start, end, file_number, number, count, split)
            )
    return ranges


def _open(r: FileRange):
    return fsutil.open_read(r.path, compressed=r.compressed)


def count_newlines(r: FileRange) -> int:
    with _open(r) as f:
        f.seek(r.start)
        left = r.end - r.start if r.end is not None else None
        newlines = 0
        while left is None or left > 0:
            block = f.read(fsutil.COPY_BLOCK if left is None else min(left, fsutil.COPY_BLOCK))
            if not block:
                break
            newlines += block.count(b"\n")
            if left is not None:
                left -= len(block)
        return newlines


def census(r: FileRange, options) -> Census:
    """Newlines in the range and, for CoNLL, the sentences a lenient read keeps in it
    (``options``: ``columns``, ``max_sentence_tokens``)."""
    sentences = 0
    if r.kind == "conll":
        sentences = sum(1 for _ in conll_sentences(r, options, conll.ReadStats(), lenient=True))
    return Census(r.file_number, r.number, count_newlines(r), sentences)


def numbered(ranges: Iterable[FileRange], censuses: Iterable[Census]) -> list[FileRange]:
    """The ranges with ``first_line`` and ``first_index`` from the running sums of the
    censuses of the ranges before them in the same file."""
    found = {(c.file_number, c.number): c for c in censuses}
    out, line, index, current = [], 1, 0, None
    for r in sorted(ranges, key=lambda r: (r.file_number, r.number)):
        if (r.file_number, r.number) not in found:
            raise RuntimeError(
                f"the census lost range {r.name} of {r.path}: the runner dropped work"
            )
        if r.file_number != current:
            line, index, current = 1, 0, r.file_number
        out.append(r._replace(first_line=line, first_index=index))
        line += found[(r.file_number, r.number)].newlines
        index += found[(r.file_number, r.number)].sentences
    return out


def raw_lines(r: FileRange) -> Iterator[tuple[int, bytes]]:
    """(line number, line bytes) of the lines that start in the range."""
    with _open(r) as f:
        position = conll.first_line_start(f, r.start)
        line_no = r.first_line if position == r.start else r.first_line + 1
        while r.end is None or position < r.end:
            raw = f.readline()
            if not raw:
                return
            yield line_no, raw
            line_no += 1
            position += len(raw)


def conll_sentences(
    r: FileRange, options, stats: conll.ReadStats, lenient: bool | None = None
) -> Iterator[conll.Sentence]:
    """The sentences of a CoNLL range, numbered as in a read of the whole file."""
    with _open(r) as f:
        yield from conll.read_conll_range(
            f,
            r.path,
            r.start,
            r.end,
            r.first_line,
            r.first_index,
            options.columns,
            options.lenient if lenient is None else lenient,
            options.max_sentence_tokens,
            stats,
        )
