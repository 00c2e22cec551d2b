"""Tag schemes: the one place that reads and writes tags. A tag is "O" or PREFIX-TYPE.
IOB1: I- everywhere, B- only to separate two adjacent chunks of the same type. IOB2: every
chunk starts with B-. IOBES: single-token chunks are S-, chunk ends are E-. Readers validate
tags with ``split_tag``; the CRF builds its transition constraints from ``PREFIXES``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

SCHEMES = ("IOB1", "IOB2", "IOBES")
PREFIXES = {"IOB1": "IB", "IOB2": "IB", "IOBES": "IBES"}  # the chunk prefixes each scheme uses


def split_tag(tag: str) -> tuple[str, str]:
    """("B", "PER") for "B-PER"; ("O", "") for "O"."""
    if tag == "O":
        return "O", ""
    prefix, sep, kind = tag.partition("-")
    if not sep or prefix not in "BIES" or len(prefix) != 1 or not kind:
        raise ValueError(f"malformed tag {tag!r}")
    return prefix, kind


def is_tag(tag: str) -> bool:
    """Whether ``tag`` is well-formed: "O" or B-/I-/E-/S-TYPE (``split_tag``)."""
    try:
        split_tag(tag)
    except ValueError:
        return False
    return True


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
        if scheme == "IOB2" or (
            scheme == "IOB1" and previous_end == start and previous_kind == kind
        ):
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
