"""Mention replacement (Dai and Adel 2020, "An Analysis of Simple Data Augmentation for Named
Entity Recognition"): a new sentence from a tagged one, each entity mention swapped, with some
probability, for another mention of the same type drawn from a pool. The new sentences keep
their source's contexts with other names in them; a teacher's soft targets on them
(`preprocess --soft-targets`) give a student in-domain sentences the teacher never trained on.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from etagger import tagschemes
from etagger.conll import Sentence


class Mention(NamedTuple):
    """An entity mention: its type and, per token, the values of the sentence's columns
    other than "tag", in column order (word first where the file has it so)."""

    kind: str
    rows: tuple[tuple[str, ...], ...]


def untagged_names(columns: Sequence[str]) -> tuple[str, ...]:
    """The columns a mention's rows hold, of a file with ``columns``."""
    return tuple(name for name in columns if name != "tag")


def _untagged_rows(sentence: Sentence) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """(the names of the sentence's columns other than "tag", per token its values of them)."""
    names = untagged_names(tuple(sentence.columns))
    return names, list(zip(*(sentence.columns[name] for name in names)))


def mentions(sentence: Sentence) -> list[Mention]:
    """The gold mentions of a sentence, read from its "tag" column (any IOB scheme)."""
    _, rows = _untagged_rows(sentence)
    return [
        Mention(kind, tuple(rows[start:end]))
        for kind, start, end in tagschemes.chunks(sentence.columns["tag"])
    ]


# What a mention from another file gets in a column of the input that the file lacks: the
# CoNLL-2003 mark for "no value" (its -DOCSTART- lines carry it).
NO_VALUE = "-X-"


def conform(mention: Mention, names: Sequence[str], to_names: Sequence[str]) -> Mention:
    """The mention with its rows in the columns ``to_names`` (an input's columns other than
    "tag"), from its own columns ``names``; a column it lacks gets ``NO_VALUE``."""
    where = [names.index(name) if name in names else None for name in to_names]
    return Mention(
        mention.kind,
        tuple(tuple(NO_VALUE if i is None else row[i] for i in where) for row in mention.rows),
    )


def pool_of(found: Iterable[Mention]) -> dict[str, tuple[Mention, ...]]:
    """type -> its distinct mentions, sorted, so that a seeded draw is the same on every
    worker and runner."""
    by_kind: dict[str, set[Mention]] = {}
    for mention in found:
        by_kind.setdefault(mention.kind, set()).add(mention)
    return {kind: tuple(sorted(values)) for kind, values in sorted(by_kind.items())}


def sentence_scheme(tags: Sequence[str]) -> str:
    """The scheme a sentence's tags are written in, so that its copy is written in the same:
    IOB1 files start each chunk with I-, which ``detect_scheme`` sees in any one sentence."""
    return tagschemes.detect_scheme([tags])


def replace_mentions(
    sentence: Sentence,
    pool: Mapping[str, Sequence[Mention]],
    probability: float,
    rng: random.Random,
) -> tuple[Sentence, int]:
    """(the sentence with each mention replaced with ``probability`` by a different mention
    of its type from ``pool``, drawn uniformly; the number replaced). Tokens outside
    mentions, the sentence's leading text and its line stay; tags are written in the
    sentence's own scheme."""
    names, rows = _untagged_rows(sentence)
    out_rows: list[tuple[str, ...]] = []
    spans: list[tuple[str, int, int]] = []
    replaced, position = 0, 0
    for kind, start, end in tagschemes.chunks(sentence.columns["tag"]):
        out_rows.extend(rows[position:start])
        mention = tuple(rows[start:end])
        choices = pool.get(kind, ())
        # One draw per mention whatever the pool holds, so a mention's fate does not shift
        # the draws of the mentions after it when a pool changes.
        swap, pick = rng.random() < probability, rng.random()
        if swap and choices:
            other = choices[int(pick * len(choices))]
            if other.rows != mention:
                mention, replaced = other.rows, replaced + 1
        spans.append((kind, len(out_rows), len(out_rows) + len(mention)))
        out_rows.extend(mention)
        position = end
    out_rows.extend(rows[position:])
    columns = {name: tuple(row[i] for row in out_rows) for i, name in enumerate(names)}
    tags = tagschemes.from_chunks(len(out_rows), spans, sentence_scheme(sentence.columns["tag"]))
    columns["tag"] = tuple(tags)
    ordered = {name: columns[name] for name in sentence.columns}
    return dataclasses.replace(sentence, columns=ordered), replaced


def copy_rng(seed: int, copy: int, sentence: Sentence) -> random.Random:
    """The generator of one copy of one sentence: a string seed (hashed with SHA-512 by
    ``random``), so every worker and runner draws the same."""
    return random.Random(f"{seed}/{copy}/{sentence.index}")
