"""Chunk (entity) evaluation identical to the CoNLL shared task's ``conlleval.pl``.

This is a port of conlleval.pl (version 2004-01-26, default mode, i.e. without ``-r``):
the same chunk start/end rules, the same token-by-token counting of correct chunks, the
same sentence-boundary handling and the same report text.

The one deliberate extension is IOBES: the perl script predates the ``S-`` prefix and
merges ``S-PER S-PER`` (or ``E-PER B-PER``) into one chunk. Here, as in the widely used
Python port of conlleval and in seqeval's default mode, a ``B``/``S`` tag always starts a
chunk and an ``E``/``S`` tag always ends one. Sequences using only the prefixes B, I and O
(IOB1, IOB2) get exactly the perl script's numbers.

Scores in :class:`Report` are fractions in [0, 1]; :func:`format_report` prints the
percentages that conlleval prints.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Sequence

BOUNDARY = "-X-"  # conlleval's sentence-boundary word; a blank line means the same
OUTSIDE = "O"


def split_tag(tag: str) -> tuple[str, str]:
    """Split a tag into (prefix, type) as conlleval does: at the first '-'.

    A tag without '-' is all prefix with type "" (so a bare ``PER`` is *not* read as
    ``I-PER``; like conlleval, it only starts a chunk when the type changes).
    """
    prefix, dash, chunk_type = tag.partition("-")
    if not dash:
        return tag, ""
    # Perl's `$type ? $type : ""` maps the (false) string "0" to "".
    return prefix, "" if chunk_type == "0" else chunk_type


def end_of_chunk(prev_tag: str, tag: str, prev_type: str, chunk_type: str) -> bool:
    """True if a chunk ended between the previous and the current token (prefixes and types)."""
    return (
        prev_tag in ("E", "S", "[", "]")  # E/S close their chunk; '[' ']' chunks have length 1
        or (prev_tag in ("B", "I") and tag in ("B", "S", "O"))
        or (prev_tag not in ("O", ".") and prev_type != chunk_type)
    )


def start_of_chunk(prev_tag: str, tag: str, prev_type: str, chunk_type: str) -> bool:
    """True if a chunk started between the previous and the current token."""
    return (
        tag in ("B", "S", "[", "]")
        or (
            prev_tag in ("E", "S", "O") and tag in ("E", "I")
        )  # IOB1/IOE: I or E after a closed chunk
        or (tag not in ("O", ".") and prev_type != chunk_type)
    )


@dataclasses.dataclass(frozen=True)
class Report:
    """Result of :func:`evaluate`. All scores are fractions in [0, 1], not percentages.

    ``per_type`` maps each chunk type (sorted as conlleval sorts them) to
    ``(precision, recall, f1, pred_count, gold_count)``. ``token_*`` are token-level
    micro scores: a token is positive when its tag is not "O", and a true positive when
    gold and predicted tags are both positive with the same type (prefix ignored).
    """

    tokens: int
    phrases_gold: int
    phrases_pred: int
    correct_chunks: int
    correct_tags: int
    accuracy: float
    precision: float
    recall: float
    f1: float
    per_type: dict[str, tuple[float, float, float, int, int]]
    correct_per_type: dict[str, int]
    token_precision: float
    token_recall: float
    token_f1: float


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def _f1(precision: float, recall: float) -> float:
    return _ratio(2 * precision * recall, precision + recall)


def _entity_type(tag: str) -> str:
    return tag[2:] if tag[:2] in ("B-", "I-", "E-", "S-") else tag


class _Counter:
    """conlleval's main loop: feed it one (gold, pred) tag pair per line."""

    def __init__(self):
        self.last_gold, self.last_gold_type = OUTSIDE, ""
        self.last_pred, self.last_pred_type = OUTSIDE, ""
        self.in_correct = False  # the chunk being read is correct so far
        self.tokens = self.correct_tags = 0
        self.found_gold: Counter[str] = Counter()
        self.found_pred: Counter[str] = Counter()
        self.correct: Counter[str] = Counter()
        self.token_tp = self.token_gold = self.token_pred = 0

    def boundary(self):
        # A sentence break is an "O" token that is not counted; it closes open chunks.
        self.step(OUTSIDE, OUTSIDE, is_boundary=True)

    def step(self, gold_tag: str, pred_tag: str, is_boundary: bool = False):
        gold, gold_type = split_tag(gold_tag)
        pred, pred_type = split_tag(pred_tag)
        gold_end = end_of_chunk(self.last_gold, gold, self.last_gold_type, gold_type)
        pred_end = end_of_chunk(self.last_pred, pred, self.last_pred_type, pred_type)
        gold_start = start_of_chunk(self.last_gold, gold, self.last_gold_type, gold_type)
        pred_start = start_of_chunk(self.last_pred, pred, self.last_pred_type, pred_type)

        if self.in_correct:
            if gold_end and pred_end and self.last_pred_type == self.last_gold_type:
                self.in_correct = False
                self.correct[self.last_gold_type] += 1
            elif gold_end != pred_end or pred_type != gold_type:
                self.in_correct = False
        if gold_start and pred_start and pred_type == gold_type:
            self.in_correct = True
        if gold_start:
            self.found_gold[gold_type] += 1
        if pred_start:
            self.found_pred[pred_type] += 1

        if not is_boundary:
            self.tokens += 1
            self.correct_tags += (gold, gold_type) == (pred, pred_type)
            gold_pos, pred_pos = gold_tag != OUTSIDE, pred_tag != OUTSIDE
            self.token_gold += gold_pos
            self.token_pred += pred_pos
            self.token_tp += (
                gold_pos and pred_pos and _entity_type(gold_tag) == _entity_type(pred_tag)
            )

        self.last_gold, self.last_gold_type = gold, gold_type
        self.last_pred, self.last_pred_type = pred, pred_type

    def report(self) -> Report:
        if self.in_correct:  # end of input closes the last chunk
            self.correct[self.last_gold_type] += 1
            self.in_correct = False
        n_correct, n_gold, n_pred = (
            sum(c.values()) for c in (self.correct, self.found_gold, self.found_pred)
        )
        per_type = {}
        for chunk_type in sorted(set(self.found_gold) | set(self.found_pred)):
            p = _ratio(self.correct[chunk_type], self.found_pred[chunk_type])
            r = _ratio(self.correct[chunk_type], self.found_gold[chunk_type])
            per_type[chunk_type] = (
                p,
                r,
                _f1(p, r),
                self.found_pred[chunk_type],
                self.found_gold[chunk_type],
            )
        precision, recall = _ratio(n_correct, n_pred), _ratio(n_correct, n_gold)
        token_p, token_r = (
            _ratio(self.token_tp, self.token_pred),
            _ratio(self.token_tp, self.token_gold),
        )
        return Report(
            tokens=self.tokens,
            phrases_gold=n_gold,
            phrases_pred=n_pred,
            correct_chunks=n_correct,
            correct_tags=self.correct_tags,
            accuracy=_ratio(self.correct_tags, self.tokens),
            precision=precision,
            recall=recall,
            f1=_f1(precision, recall),
            per_type=per_type,
            correct_per_type={t: self.correct[t] for t in per_type},
            token_precision=token_p,
            token_recall=token_r,
            token_f1=_f1(token_p, token_r),
        )


def evaluate(
    gold_sentences: Sequence[Sequence[str]], pred_sentences: Sequence[Sequence[str]]
) -> Report:
    """Score predicted tag sentences against gold ones, as conlleval would on their concatenation
    with a blank line after each sentence."""
    if len(gold_sentences) != len(pred_sentences):
        raise ValueError(
            f"{len(gold_sentences)} gold sentences but {len(pred_sentences)} predicted"
        )
    counter = _Counter()
    for index, (gold, pred) in enumerate(zip(gold_sentences, pred_sentences)):
        if len(gold) != len(pred):
            raise ValueError(f"sentence {index}: {len(gold)} gold tags but {len(pred)} predicted")
        for gold_tag, pred_tag in zip(gold, pred):
            counter.step(gold_tag, pred_tag)
        counter.boundary()
    return counter.report()


def format_report(report: Report) -> str:
    """The text conlleval.pl prints for these counts (byte for byte, trailing newline included)."""
    # Recompute percentages from counts in the script's order of operations, so that
    # rounding to two decimals can never differ from the perl output.
    precision = _ratio(100 * report.correct_chunks, report.phrases_pred)
    recall = _ratio(100 * report.correct_chunks, report.phrases_gold)
    lines = [
        f"processed {report.tokens} tokens with {report.phrases_gold} phrases; "
        f"found: {report.phrases_pred} phrases; correct: {report.correct_chunks}."
    ]
    if report.tokens > 0:
        accuracy = 100 * report.correct_tags / report.tokens
        lines.append(
            f"accuracy: {accuracy:6.2f}%; precision: {precision:6.2f}%; recall: {recall:6.2f}%; "
            f"FB1: {_f1(precision, recall):6.2f}"
        )
    for chunk_type, (_, _, _, n_pred, n_gold) in report.per_type.items():
        correct = report.correct_per_type.get(chunk_type, 0)
        precision, recall = _ratio(100 * correct, n_pred), _ratio(100 * correct, n_gold)
        line = (
            f"{chunk_type:>17}: precision: {precision:6.2f}%; recall: {recall:6.2f}%; "
            f"FB1: {_f1(precision, recall):6.2f}  {n_pred}"
        )
        # conlleval's de-duplication of sorted type names tests `not($lastType)`, which is
        # true for "", so the empty type gets one line per count table it appears in.
        lines.extend([line] * (1 + (chunk_type == "" and n_pred > 0 and n_gold > 0)))
    return "\n".join(lines) + "\n"


def read_conlleval_file(path: str | os.PathLike) -> tuple[list[list[str]], list[list[str]]]:
    """Read conlleval input: whitespace-separated columns whose last two are the gold and the
    predicted tag, sentences separated by blank lines (or lines whose first column is ``-X-``).

    As in conlleval, every other line is a token, ``-DOCSTART-`` lines included (their tags
    are "O", so they add to the token count only). Returns (gold_sentences, pred_sentences).
    Raises ValueError naming file and line for a line with fewer than three columns (word,
    gold, pred) or with a column count different from the first token line.
    """
    gold_sentences: list[list[str]] = []
    pred_sentences: list[list[str]] = []
    gold: list[str] = []
    pred: list[str] = []
    n_columns = None
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            fields = line.split()
            if fields:
                if n_columns is None:
                    n_columns = len(fields)
                if len(fields) != n_columns:
                    raise ValueError(
                        f"{path}:{line_number}: {len(fields)} columns, expected {n_columns}"
                    )
                if len(fields) < 3:
                    raise ValueError(
                        f"{path}:{line_number}: need a word, a gold and a predicted tag"
                    )
            if not fields or fields[0] == BOUNDARY:
                if gold:
                    gold_sentences.append(gold)
                    pred_sentences.append(pred)
                    gold, pred = [], []
                continue
            gold.append(fields[-2])
            pred.append(fields[-1])
    if gold:
        gold_sentences.append(gold)
        pred_sentences.append(pred)
    return gold_sentences, pred_sentences
