"""CoNLL column files: reading (whole files or byte ranges, validated with file and line)
and writing.

A CoNLL file is a sequence of token lines (whitespace-separated columns, one token per
line) with blank lines between sentences and optional ``-DOCSTART-`` lines between
documents. Reading keeps everything needed to write the file back byte for byte: each
sentence carries the exact text that preceded it (``leading``: document markers and extra
blank lines), and ``write_conll`` reproduces the standard layout around it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, TypeVar

from etagger.errors import InputError
from etagger.tagschemes import split_tag

log = logging.getLogger(__name__)

CONLL2003_COLUMNS = ("word", "pos", "chunk", "tag")
WORD_TAG_COLUMNS = ("word", "tag")
DOCSTART = "-DOCSTART-"
WIKITEXT_UNKNOWN = "<unk>"  # the token wikitext-2/-103 writes for a rare word it hides
T = TypeVar("T")


class ConllFormatError(InputError):
    """A malformed CoNLL input; the message names the file and the 1-based line number."""

    def __init__(self, path: str, line: int | None = None, message: str | None = None):
        if line is None:
            # One preformatted "path:line: message" argument: how Beam re-raises an error
            # from a DoFn (type(e)(e.args[0] + " [while running ...]")) and how pickle
            # rebuilds it. Without this form the error reached the caller as RuntimeError.
            super().__init__(path)
            found = re.match(r"(.*?):(\d+): ", path)
            self.path, self.line = (found[1], int(found[2])) if found else ("", 0)
            return
        super().__init__(f"{path}:{line}: {message}")
        self.path, self.line = path, line


@dataclasses.dataclass(frozen=True)
class Sentence:
    """One sentence of a column file.

    Attributes:
      columns: column name -> tokens of that column, all of the same length.
      index: 0-based position of the sentence in its file.
      source: the file it came from.
      line: 1-based line number of its first token.
      leading: the raw text between the previous sentence's separating blank line and this
        sentence's first token (e.g. ``"-DOCSTART- -X- -X- O\\n\\n"``), kept for exact
        round trips and document boundaries.
      offsets: for sentences cut from raw text, (start, end) character offsets of each
        token in its input line; empty for column files.
    """

    columns: dict[str, tuple[str, ...]]
    index: int = 0
    source: str = ""
    line: int = 0
    leading: str = ""
    offsets: tuple[tuple[int, int], ...] = ()

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), ()))

    @property
    def words(self) -> tuple[str, ...]:
        return self.columns["word"]

    @property
    def doc_start(self) -> bool:
        return DOCSTART in self.leading


def sentence_key(words: Sequence[str]) -> str:
    """SHA-256 of a sentence's tokens: equal exactly when the token sequences are equal,
    whatever file, line or tags they came with (how silver data is kept apart from dev and
    test)."""
    return hashlib.sha256("\n".join(words).encode("utf-8")).hexdigest()


@dataclasses.dataclass
class ReadStats:
    """What a lenient read skipped, so that no record is lost silently."""

    sentences: int = 0
    skipped_sentences: int = 0
    skipped_lines: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)


class _Parser:
    """The line-by-line state machine of ``read_conll``: ``line()`` takes a file's lines in
    order and returns each sentence as it finishes (a blank line after its tokens),
    ``end()`` the last one. A sentence that is malformed (non-UTF-8 bytes, a wrong column
    count, a malformed tag in the "tag" column, more than ``max_sentence_tokens`` tokens) raises
    ConllFormatError, or with ``lenient`` is
    skipped and counted in ``stats``; its leading text then passes to the next sentence."""

    def __init__(
        self,
        path: str,
        columns: Sequence[str],
        lenient: bool,
        max_sentence_tokens: int,
        stats: ReadStats,
        index: int = 0,
    ):
        self.path, self.columns, self.width = path, tuple(columns), len(columns)
        self.lenient, self.max_sentence_tokens, self.stats, self.index = (
            lenient,
            max_sentence_tokens,
            stats,
            index,
        )
        self.tag_column = self.columns.index("tag") if "tag" in self.columns else None
        self.rows: list[list[str]] = []
        self.first_line = 0
        self.leading: list[str] = []
        self.bad: str | None = None
        self.finished = 0  # sentences finished, kept or skipped

    def _problem(self, line_no: int, message: str) -> None:
        if not self.lenient:
            raise ConllFormatError(self.path, line_no, message)
        self.bad = self.bad or f"{self.path}:{line_no}: {message}"

    def line(self, line_no: int, raw: bytes) -> Sentence | None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            self._problem(line_no, f"not valid UTF-8 ({e.reason} at byte {e.start})")
            self.stats.skipped_lines += 1
            return None
        fields = text.split()
        if not fields:
            if self.rows or self.bad is not None:
                return self.end()
            self.leading.append(text)
            return None
        if fields[0] == DOCSTART and not self.rows:
            self.leading.append(text)
            return None
        if not self.rows:
            self.first_line = line_no
        if len(fields) != self.width:
            self._problem(
                line_no,
                f"expected {self.width} columns ({' '.join(self.columns)}), found {len(fields)}",
            )
            self.stats.skipped_lines += 1
            return None
        if self.tag_column is not None:
            try:
                split_tag(fields[self.tag_column])
            except ValueError as e:  # the one check of gold tags, for every reader of CoNLL files
                self._problem(line_no, str(e))
                self.stats.skipped_lines += 1
                return None
        if self.max_sentence_tokens and len(self.rows) >= self.max_sentence_tokens:
            self._problem(
                line_no,
                f"sentence starting at line {self.first_line} is longer than "
                f"{self.max_sentence_tokens} tokens",
            )
        self.rows.append(fields)
        return None

    def end(self) -> Sentence | None:
        """Finishes the sentence in progress, if any."""
        sentence = None
        if self.bad is not None:
            self.stats.skipped_sentences += 1
            self.stats.errors.append(self.bad)
            log.warning("skipping sentence: %s", self.bad)
            self.finished += 1
        elif self.rows:
            sentence = Sentence(
                columns={
                    name: tuple(r[i] for r in self.rows) for i, name in enumerate(self.columns)
                },
                index=self.index,
                source=self.path,
                line=self.first_line,
                leading="".join(self.leading),
            )
            self.index += 1
            self.stats.sentences += 1
            self.leading = []
            self.finished += 1
        self.rows, self.bad = [], None
        return sentence


def read_conll(
    path: str | os.PathLike,
    columns: Sequence[str] = CONLL2003_COLUMNS,
    lenient: bool = False,
    max_sentence_tokens: int = 0,
    stats: ReadStats | None = None,
) -> Iterator[Sentence]:
    """Yields the sentences of a CoNLL file (any path Beam's filesystems read).

    Raises ConllFormatError (file and line) on non-UTF-8 bytes, a wrong column count, a
    malformed tag (not O or B-/I-/E-/S-TYPE) or a sentence longer than ``max_sentence_tokens``
    (0 = no limit). With ``lenient=True`` the offending
    sentence is skipped instead, and counted and logged in ``stats``.
    """
    from etagger import fsutil

    path = str(path)
    with fsutil.open_read(path) as f:
        yield from read_conll_range(
            f, path, 0, None, 1, 0, columns, lenient, max_sentence_tokens, stats
        )


# A range of a CoNLL file is read without the bytes before it. Its sentences are those whose
# paragraph (maximal run of non-blank lines) starts inside the range. The state the parser
# would have there (leading text, a skipped sentence's carried leading) is rebuilt from a
# window of bytes before the range, which starts a fresh parser at a paragraph seen whole
# and is synchronised after the first sentence it keeps: from then on the state is exact.
SYNC_WINDOW = 1 << 16


def _blank(raw: bytes) -> bool:
    return not raw.decode("utf-8", errors="replace").split()


def first_line_start(f: IO[bytes], position: int) -> int:
    """Seeks ``f`` to the first line that starts at or after ``position``; returns it."""
    if position == 0:
        f.seek(0)
        return 0
    f.seek(position - 1)
    return position - 1 + len(f.readline())


def read_conll_range(
    f: IO[bytes],
    path: str,
    start: int,
    end: int | None,
    first_line: int,
    first_index: int,
    columns: Sequence[str] = CONLL2003_COLUMNS,
    lenient: bool = False,
    max_sentence_tokens: int = 0,
    stats: ReadStats | None = None,
) -> Iterator[Sentence]:
    """The sentences of the open file ``f`` whose paragraph starts in [start, end) (end
    None: to the end of the file), exactly as ``read_conll`` reads them from the whole
    file. ``first_line`` is the number of the line holding byte ``start`` and
    ``first_index`` the number of sentences kept before ``start``."""
    stats = stats if stats is not None else ReadStats()
    window = SYNC_WINDOW
    while True:
        sentences = _scan_range(
            f,
            path,
            start,
            end,
            first_line,
            first_index,
            columns,
            lenient,
            max_sentence_tokens,
            stats,
            max(0, start - window),
        )
        try:
            first = next(sentences)
        except _NotSynchronised:
            window *= 4
            continue
        except StopIteration:
            return
        yield first
        yield from sentences
        return


class _NotSynchronised(Exception):
    """No sentence seen whole before the range synchronised the parser: widen the window."""


def _scan_range(
    f,
    path,
    start,
    end,
    first_line,
    first_index,
    columns,
    lenient,
    max_sentence_tokens,
    stats,
    sync_from,
) -> Iterator[Sentence]:
    """read_conll_range, parsing from ``sync_from``. Raises _NotSynchronised (before it
    yields anything) when the window was too narrow."""
    position = first_line_start(f, sync_from)
    parser = _Parser(path, columns, True, max_sentence_tokens, ReadStats())
    synced = sync_from == 0
    trial = False  # a fresh parser is reading a paragraph seen whole
    previous_blank: bool | None = True if sync_from == 0 else None
    owned = False
    line_no = 0
    while True:
        raw = f.readline()
        if not raw:
            break
        blank = _blank(raw)
        paragraph = not blank and previous_blank is True
        if position >= start and previous_blank is None:
            raise _NotSynchronised()  # the window holds no whole line before the range
        if position >= start and not line_no:
            line_no = first_line if position == start else first_line + 1
        if paragraph and position >= start:
            if end is not None and position >= end:
                return
            if not owned:
                if not synced:
                    raise _NotSynchronised()
                parser.lenient, parser.stats, parser.index = lenient, stats, first_index
                owned = True
        elif paragraph and not synced:
            parser = _Parser(path, columns, True, max_sentence_tokens, ReadStats())
            trial = True
        finished = parser.finished
        sentence = parser.line(line_no, raw)
        if trial and parser.finished > finished:
            synced, trial = sentence is not None, False
        if owned and sentence is not None:
            yield sentence
        if line_no:
            line_no += 1
        previous_blank = blank
        position += len(raw)
    if owned:
        sentence = parser.end()
        if sentence is not None:
            yield sentence


def format_sentence(sentence: Sentence, columns: Sequence[str] | None = None) -> str:
    """The sentence as CoNLL text: its leading text, token lines, then a blank line."""
    names = list(columns or sentence.columns)
    lines = zip(*(sentence.columns[name] for name in names))
    return sentence.leading + "".join(" ".join(fields) + "\n" for fields in lines) + "\n"


def write_conll(
    path: str | os.PathLike, sentences: Iterable[Sentence], columns: Sequence[str] | None = None
) -> None:
    """Writes sentences as a CoNLL file atomically (temp file in the same folder, then rename)."""
    from etagger import fsutil

    with fsutil.atomic_write(path) as f:
        for sentence in sentences:
            f.write(format_sentence(sentence, columns))
