"""CoNLL column files: reading, writing, and tag-scheme conversion (IOB1, IOB2, IOBES).

A CoNLL file is a sequence of token lines (whitespace-separated columns, one token per
line) with blank lines between sentences and optional ``-DOCSTART-`` lines between
documents. Reading keeps everything needed to write the file back byte for byte: each
sentence carries the exact text that preceded it (``leading``: document markers and extra
blank lines), and ``write_conll`` reproduces the standard layout around it.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

log = logging.getLogger(__name__)

CONLL2003_COLUMNS = ("word", "pos", "chunk", "tag")
WORD_TAG_COLUMNS = ("word", "tag")
DOCSTART = "-DOCSTART-"
SCHEMES = ("IOB1", "IOB2", "IOBES")
T = TypeVar("T")


class ConllFormatError(ValueError):
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


@dataclasses.dataclass
class ReadStats:
    """What a lenient read skipped, so that no record is lost silently."""

    sentences: int = 0
    skipped_sentences: int = 0
    skipped_lines: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)


def read_conll(
    path: str | os.PathLike,
    columns: Sequence[str] = CONLL2003_COLUMNS,
    lenient: bool = False,
    max_tokens: int = 0,
    stats: ReadStats | None = None,
) -> Iterator[Sentence]:
    """Yields the sentences of a CoNLL file.

    Raises ConllFormatError (file and line) on non-UTF-8 bytes, a wrong column count or a
    sentence longer than ``max_tokens`` (0 = no limit). With ``lenient=True`` the offending
    sentence is skipped instead, and counted and logged in ``stats``.
    """
    path = str(path)
    stats = stats if stats is not None else ReadStats()
    width = len(columns)
    rows: list[list[str]] = []
    first_line = 0
    leading: list[str] = []
    bad: str | None = None
    index = 0

    def finish() -> Sentence | None:
        nonlocal rows, leading, bad, index
        sentence = None
        if bad is not None:
            stats.skipped_sentences += 1
            stats.errors.append(bad)
            log.warning("skipping sentence: %s", bad)
        elif rows:
            sentence = Sentence(
                columns={name: tuple(r[i] for r in rows) for i, name in enumerate(columns)},
                index=index, source=path, line=first_line, leading="".join(leading))
            index += 1
            stats.sentences += 1
            leading = []
        rows, bad = [], None
        return sentence

    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                problem = f"{path}:{line_no}: not valid UTF-8 ({e.reason} at byte {e.start})"
                if not lenient:
                    raise ConllFormatError(path, line_no, f"not valid UTF-8 ({e.reason} at byte {e.start})") from None
                stats.skipped_lines += 1
                bad = bad or problem
                continue
            fields = text.split()
            if not fields:
                if rows or bad is not None:
                    sentence = finish()
                    if sentence is not None:
                        yield sentence
                else:
                    leading.append(text)
                continue
            if fields[0] == DOCSTART and not rows:
                leading.append(text)
                continue
            if not rows:
                first_line = line_no
            if len(fields) != width:
                message = f"expected {width} columns ({' '.join(columns)}), found {len(fields)}"
                if not lenient:
                    raise ConllFormatError(path, line_no, message)
                stats.skipped_lines += 1
                bad = bad or f"{path}:{line_no}: {message}"
                continue
            if max_tokens and len(rows) >= max_tokens:
                message = f"sentence starting at line {first_line} is longer than {max_tokens} tokens"
                if not lenient:
                    raise ConllFormatError(path, line_no, message)
                bad = bad or f"{path}:{line_no}: {message}"
            rows.append(fields)
    sentence = finish()
    if sentence is not None:
        yield sentence


# Packs never span two blocks of this many sentence indices, so a distributed pipeline can
# pack each block on its own and still cut exactly where training and evaluation cut. A
# raw-text sentence's index is line * 65536 + k, so each raw line starts a block: a line is
# a document.
PACK_BLOCK = 1024


def starts_pack(index: int, leading: str) -> bool:
    """Whether the sentence at ``index`` (after ``leading`` text) must begin a new pack:
    at a document start (``-DOCSTART-``) and at every ``PACK_BLOCK`` boundary."""
    return DOCSTART in leading or index % PACK_BLOCK == 0


def pack_documents(sentences: Iterable[T], max_tokens: int, length: Callable[[T], int],
                   starts_document: Callable[[T], bool]) -> list[list[T]]:
    """Groups consecutive sentences (in file order) into packs of at most ``max_tokens``
    tokens that never cross a document boundary (a sentence for which ``starts_document``
    is true); a longer sentence is a pack of its own. A model with document context reads
    each pack as one sequence, so it sees the sentences around the one it tags."""
    packs: list[list[T]] = []
    tokens = 0
    for sentence in sentences:
        n = length(sentence)
        if not packs or starts_document(sentence) or tokens + n > max_tokens:
            packs.append([])
            tokens = 0
        packs[-1].append(sentence)
        tokens += n
    return packs


def split_pack(columns: Mapping[str, Sequence], lengths: Iterable[int]) -> list[dict]:
    """Cuts the per-token ``columns`` of a pack back into one dict per sentence, of
    ``lengths`` tokens each (the inverse of joining the sentences of a pack)."""
    parts, start = [], 0
    for n in lengths:
        parts.append({name: values[start:start + n] for name, values in columns.items()})
        start += n
    return parts


def format_sentence(sentence: Sentence, columns: Sequence[str] | None = None) -> str:
    """The sentence as CoNLL text: its leading text, token lines, then a blank line."""
    names = list(columns or sentence.columns)
    lines = zip(*(sentence.columns[name] for name in names))
    return sentence.leading + "".join(" ".join(fields) + "\n" for fields in lines) + "\n"


def write_conll(path: str | os.PathLike, sentences: Iterable[Sentence],
                columns: Sequence[str] | None = None) -> None:
    """Writes sentences as a CoNLL file atomically (temp file in the same folder, then rename)."""
    with atomic_write(path) as f:
        for sentence in sentences:
            f.write(format_sentence(sentence, columns))


class atomic_write:
    """Context manager: a text file that appears at ``path`` only when the block succeeds."""

    def __init__(self, path: str | os.PathLike, mode: str = "w"):
        self.path = Path(path)
        self.mode = mode

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        self.file = os.fdopen(fd, self.mode, **({} if "b" in self.mode else {"encoding": "utf-8"}))
        return self.file

    def __exit__(self, exc_type, exc, tb):
        self.file.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            os.unlink(self.tmp)
        return False


def atomic_folder(save, target: str | os.PathLike) -> Path:
    """Runs ``save(folder)`` into a temporary sibling of ``target`` (e.g. a SavedModel), then
    renames it into place; an existing ``target`` is only removed once the new one is
    complete, so a reader sees the old folder or the new one, never half of one."""
    target = Path(target)
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        save(staging)
        if target.exists():
            os.replace(target, old)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if old.exists() and not target.exists():  # the swap itself failed: put the old one back
            os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return target


# ---------------------------------------------------------------------------------------
# Tag schemes. A tag is "O" or PREFIX-TYPE. IOB1: I- everywhere, B- only to separate two
# adjacent chunks of the same type. IOB2: every chunk starts with B-. IOBES: single-token
# chunks are S-, chunk ends are E-.

def split_tag(tag: str) -> tuple[str, str]:
    """("B", "PER") for "B-PER"; ("O", "") for "O"."""
    if tag == "O":
        return "O", ""
    prefix, sep, kind = tag.partition("-")
    if not sep or prefix not in "BIES" or len(prefix) != 1:
        raise ValueError(f"malformed tag {tag!r}")
    return prefix, kind


def chunks(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Chunks as (type, start, end_exclusive), read the way conlleval reads them.

    The reading does not depend on the scheme: B- and S- always begin a chunk, I- and E-
    continue one of the same type or else begin one, E- and S- end one.
    """
    out: list[tuple[str, int, int]] = []
    start, kind = None, ""
    for i, tag in enumerate(tags):
        prefix, t = split_tag(tag)
        begins = prefix in "BS" or (prefix in "IE" and (start is None or t != kind))
        if start is not None and (prefix == "O" or begins):
            out.append((kind, start, i))
            start = None
        if prefix != "O" and start is None:
            start, kind = i, t
        if start is not None and prefix in "ES":
            out.append((kind, start, i + 1))
            start = None
    if start is not None:
        out.append((kind, start, len(tags)))
    return out


def from_chunks(length: int, spans: Iterable[tuple[str, int, int]], scheme: str) -> list[str]:
    """Tags of ``length`` tokens that encode ``spans`` in ``scheme``."""
    tags = ["O"] * length
    previous_end, previous_kind = -1, ""
    for kind, start, end in spans:
        for i in range(start, end):
            tags[i] = f"I-{kind}"
        if scheme == "IOB2" or (scheme == "IOB1" and previous_end == start and previous_kind == kind):
            tags[start] = f"B-{kind}"
        elif scheme == "IOBES":
            if end - start == 1:
                tags[start] = f"S-{kind}"
            else:
                tags[start], tags[end - 1] = f"B-{kind}", f"E-{kind}"
        previous_end, previous_kind = end, kind
    return tags


def convert_tags(tags: Sequence[str], source: str, target: str) -> list[str]:
    """Re-encodes a tag sequence from one scheme to another (IOB1, IOB2, IOBES)."""
    if source not in SCHEMES or target not in SCHEMES:
        raise ValueError(f"unknown tag scheme: {source} -> {target}; choose from {SCHEMES}")
    if source == target:
        return list(tags)
    return from_chunks(len(tags), chunks(tags), target)


def detect_scheme(tag_sequences: Iterable[Sequence[str]]) -> str:
    """The scheme a tagged file uses: IOBES if it has E-/S- tags, IOB1 if some chunk starts
    with I- (which IOB2 forbids), else IOB2 (every chunk starts with B-)."""
    iob1 = False
    for tags in tag_sequences:
        previous = "O"
        for tag in tags:
            prefix, kind = split_tag(tag)
            if prefix in "ES":
                return "IOBES"
            if prefix == "I" and split_tag(previous)[1] != kind:
                iob1 = True
            previous = tag
    return "IOB1" if iob1 else "IOB2"
