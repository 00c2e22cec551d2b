"""Document packing: consecutive sentences of one document read together as one sequence,
by a model trained with document context, the same way in training, evaluation, Beam
tagging and line mode."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

from etagger.conll import DOCSTART, Sentence

T = TypeVar("T")
# Raw-text sentence index = line number * RAW_LINE_STRIDE + the sentence's number in the line.
RAW_LINE_STRIDE = 65536

# Packs never span two blocks of this many sentence indices, so a distributed pipeline can
# pack each block on its own and still cut exactly where training and evaluation cut. A
# raw-text sentence's index is line * RAW_LINE_STRIDE + k, so each raw line starts a block:
# a line is a document.
PACK_BLOCK = 1024


def starts_pack(index: int, leading: str) -> bool:
    """Whether the sentence at ``index`` (after ``leading`` text) must begin a new pack:
    at a document start (``-DOCSTART-``) and at every ``PACK_BLOCK`` boundary."""
    return DOCSTART in leading or index % PACK_BLOCK == 0


def pack_documents(
    sentences: Iterable[T],
    pack_tokens: int,
    length: Callable[[T], int],
    starts_document: Callable[[T], bool],
) -> list[list[T]]:
    """Groups consecutive sentences (in file order) into packs of at most ``pack_tokens``
    tokens that never cross a document boundary (a sentence for which ``starts_document``
    is true); a longer sentence is a pack of its own. A model with document context reads
    each pack as one sequence, so it sees the sentences around the one it tags."""
    packs: list[list[T]] = []
    tokens = 0
    for sentence in sentences:
        n = length(sentence)
        if not packs or starts_document(sentence) or tokens + n > pack_tokens:
            packs.append([])
            tokens = 0
        packs[-1].append(sentence)
        tokens += n
    return packs


def pack_sentences(sentences: Sequence[Sentence], pack_tokens: int) -> list[tuple[Sentence, ...]]:
    """Packs of consecutive sentences of one document, at most ``pack_tokens`` tokens each
    (``pack_documents``), cut where ``starts_pack`` says, as in training and evaluation; with
    ``pack_tokens`` 0 every sentence is a pack of its own. A raw-text line is a document, and
    a pipeline that packs reads each CoNLL file as one range, so a range never cuts a pack."""
    if not pack_tokens:
        return [(s,) for s in sentences]
    return [
        tuple(pack)
        for pack in pack_documents(
            sentences, pack_tokens, len, lambda s: starts_pack(s.index, s.leading)
        )
    ]


def split_pack(columns: Mapping[str, Sequence], lengths: Iterable[int]) -> list[dict]:
    """Cuts the per-token ``columns`` of a pack back into one dict per sentence, of
    ``lengths`` tokens each (the inverse of joining the sentences of a pack)."""
    parts, start = [], 0
    for n in lengths:
        parts.append({name: values[start : start + n] for name, values in columns.items()})
        start += n
    return parts


def length_sorted_calls(
    lengths: Sequence[int], max_items: int, max_tokens: int
) -> Iterable[list[int]]:
    """The indices of items of ``lengths`` tokens, shortest first, cut into model calls of at
    most ``max_items`` items and ``max_tokens`` tokens (an item longer than that goes alone),
    so that padding to the longest item of a call wastes little."""
    chunk: list[int] = []
    tokens = 0
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if chunk and (len(chunk) == max_items or tokens + lengths[i] > max_tokens):
            yield chunk
            chunk, tokens = [], 0
        chunk.append(i)
        tokens += lengths[i]
    if chunk:
        yield chunk
