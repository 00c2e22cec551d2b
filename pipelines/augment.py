"""Beam pipeline: new training sentences by mention replacement (``etagger.mentions``).

    etagger augment --input train.txt --output work/train_aug/train.txt --copies 2 \
        [--probability 0.5] [--seed 0] [--runner DirectRunner] ...

Two passes over the input's byte ranges (``pipelines.io``), each range read on its own:
  1. ``GatherMentions``: the distinct gold mentions of every type, written as one JSON pool,
     with those of the ``--mentions-from`` files (new names for the input's contexts, such as
     a teacher's tags of raw text) in the input's columns.
  2. ``WriteCopies``: per range, its sentences as read (copy 0), then ``copies`` rewritten
     copies, each mention swapped with ``probability`` for another of its type from the pool.
     The draws are seeded by seed, copy and sentence index, so every runner writes the same.
The driver then joins the parts into OUTPUT: copy 0 of every range, copy 1 of every range,
and so on, so each copy is the whole input rewritten, documents (``-DOCSTART-``) included,
which a teacher that reads packs of sentences needs. OUTPUT is written under a temporary name
and renamed; memory holds a range and the pool, however large the input.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence

import apache_beam as beam

from etagger import clioptions, conll, fsutil, mentions, ranges
from etagger.errors import UsageError
from pipelines import io
from pipelines.options import AugmentOptions

WORK_SUFFIX = ".etagger-work"  # the pool, parts and receipts of a run in progress
POOL = "mentions.json"


def part_name(copy: int, r: ranges.FileRange) -> str:
    return f"{copy:05d}-{r.name}.conll"


class _RangeMentions(beam.DoFn):
    """RangeSentences -> (None, the range's distinct mentions in the columns ``names``,
    but those holding the word ``unknown``), for one gathering key."""

    def __init__(self, names: tuple[str, ...], unknown: str | None = None):
        self.names, self.unknown = names, unknown

    def process(self, read: io.RangeSentences):
        found = mentions.pool_of(m for s in read.sentences for m in self._mentions(s))
        yield None, [m for values in found.values() for m in values]

    def _mentions(self, sentence: conll.Sentence) -> Iterator[mentions.Mention]:
        names = mentions.untagged_names(tuple(sentence.columns))
        word = names.index("word")
        for m in mentions.mentions(sentence):
            if all(row[word] != self.unknown for row in m.rows):
                yield mentions.conform(m, names, self.names)


class _WritePool(io.FileSystemsDoFn):
    """(None, per range its mentions) -> the pool's size per type, after writing the pool."""

    def __init__(self, path: str, fs_options: dict):
        super().__init__(fs_options)
        self.path = path

    def process(self, item):
        pool = mentions.pool_of(m for found in item[1] for m in found)
        fsutil.write_text(
            self.path,
            json.dumps({kind: [list(map(list, m.rows)) for m in ms] for kind, ms in pool.items()}),
        )
        yield {kind: len(ms) for kind, ms in pool.items()}


class GatherMentions(beam.PTransform):
    """RangeSentences of the input, or the pair (those of the input, those of other files)
    -> one element, the pool's size per type, after writing the pool of distinct mentions
    per type to ``path`` (JSON: type -> list of mentions, each a list of token rows in the
    columns ``names``). Mentions of the other files that hold the word ``unknown`` are left
    out."""

    def __init__(
        self, path: str, fs_options: dict, names: tuple[str, ...], unknown: str | None = None
    ):
        super().__init__()
        self.path, self.fs_options, self.names, self.unknown = path, fs_options, names, unknown

    def expand(self, reads):
        own, other = reads if isinstance(reads, tuple) else (reads, None)
        found = [own | "InputMentions" >> beam.ParDo(_RangeMentions(self.names))]
        if other is not None:
            found.append(
                other | "OtherMentions" >> beam.ParDo(_RangeMentions(self.names, self.unknown))
            )
        return (
            found
            | "AllSources" >> beam.Flatten()
            | "Gather" >> beam.GroupByKey()
            | "WritePool" >> beam.ParDo(_WritePool(self.path, self.fs_options))
        )


def load_pool(path: str) -> dict[str, tuple[mentions.Mention, ...]]:
    data = json.loads(fsutil.read_text(path))
    return {
        kind: tuple(mentions.Mention(kind, tuple(tuple(row) for row in rows)) for rows in ms)
        for kind, ms in data.items()
    }


class _WriteCopies(io.FileSystemsDoFn):
    """RangeSentences -> its name, after writing the range's parts (copy 0: its sentences
    as read; copies 1..N rewritten) and its receipt."""

    def __init__(self, options: AugmentOptions, work: str, fs_options: dict):
        super().__init__(fs_options)
        self.options, self.work = options, work

    def setup(self):
        super().setup()
        self.pool = load_pool(fsutil.join(self.work, POOL))

    def process(self, read: io.RangeSentences):
        o = self.options
        counts = {
            "sentences": len(read.sentences),
            "tokens": sum(map(len, read.sentences)),
            "mentions": 0,
            "replaced": 0,
        }
        for copy in range(o.copies + 1):
            with fsutil.atomic_write(
                fsutil.join(self.work, "parts", part_name(copy, read.range))
            ) as f:
                for sentence in read.sentences:
                    if copy:
                        rng = mentions.copy_rng(o.seed, copy, sentence)
                        sentence, replaced = mentions.replace_mentions(
                            sentence, self.pool, o.probability, rng
                        )
                        counts["replaced"] += replaced
                    else:
                        counts["mentions"] += len(mentions.mentions(sentence))
                    f.write(conll.format_sentence(sentence))
        io.write_receipt(
            fsutil.join(self.work, "receipts"),
            read.range.name,
            {
                **counts,
                "skipped_sentences": read.counts.skipped_sentences,
                "skipped_lines": read.counts.skipped_lines,
            },
        )
        yield read.range.name


class WriteCopies(beam.PTransform):
    """RangeSentences -> the names of the ranges whose parts and receipts are written."""

    def __init__(self, options: AugmentOptions, work: str, fs_options: dict):
        super().__init__()
        self.options, self.work, self.fs_options = options, work, fs_options

    def expand(self, read):
        return read | "WriteParts" >> beam.ParDo(
            _WriteCopies(self.options, self.work, self.fs_options)
        )


def check(options: AugmentOptions) -> None:
    if "tag" not in options.columns:
        raise UsageError("augment needs gold tags: --columns must name a 'tag' column")
    if options.mentions_from and "tag" not in options.mentions_columns:
        raise UsageError("--mentions-columns must name a 'tag' column")
    if not 0.0 <= options.probability <= 1.0:
        raise UsageError(f"--probability must be in [0, 1], not {options.probability}")


def plan_mentions_from(options: AugmentOptions, beam_options, work: str) -> list[ranges.FileRange]:
    """The censused ranges of the ``--mentions-from`` files (none without them)."""
    if not options.mentions_from:
        return []
    others = io.plan_ranges(
        {m.path: "conll" for m in fsutil.match(options.mentions_from)}, options.range_bytes
    )
    return io.take_census(others, mentions_options(options), beam_options, work)


def mentions_options(options: AugmentOptions) -> AugmentOptions:
    """The options that read the ``--mentions-from`` files: their own columns."""
    return dataclasses.replace(options, columns=options.mentions_columns)


def write_pool(
    options: AugmentOptions,
    planned: list[ranges.FileRange],
    others: list[ranges.FileRange],
    work: str,
    beam_options,
) -> None:
    """The mention pass: the pool of the input's mentions (and the other files'), written
    to ``work``/mentions.json."""
    fs_options = io.filesystem_options(beam_options)
    names = mentions.untagged_names(options.columns)
    unknown = conll.WIKITEXT_UNKNOWN if options.wikitext else None

    def gather(p):
        reads = p | "ReadForMentions" >> io.ReadRanges(planned, options, fs_options)
        if others:
            other_reads = io.ReadRanges(others, mentions_options(options), fs_options)
            reads = (reads, p | "ReadMentionsFrom" >> other_reads)
        return reads | "Mentions" >> GatherMentions(
            fsutil.join(work, POOL), fs_options, names, unknown
        )

    io.run(gather, beam_options)
    if not fsutil.exists(fsutil.join(work, POOL)):
        raise RuntimeError("the mention pass wrote no pool: the runner lost work")


def augment(options: AugmentOptions, beam_args: Sequence[str] = ()) -> dict:
    """Runs both passes and writes ``options.output``; returns the counts."""
    beam_options = io.pipeline_options(beam_args)  # first: it sets up s3:// for the driver
    check(options)
    fs_options = io.filesystem_options(beam_options)
    work = fsutil.prepare_output(options.output, options.overwrite, WORK_SUFFIX)
    try:
        planned = io.plan_ranges({options.input: "conll"}, options.range_bytes)
        planned = io.take_census(planned, options, beam_options, work)
        others = plan_mentions_from(options, beam_options, work)
        write_pool(options, planned, others, work, beam_options)
        receipts_dir = fsutil.join(work, "receipts")
        with io.Progress("augment", planned, receipts_dir, quiet=options.quiet):
            io.run(
                lambda p: (
                    p
                    | "Read" >> io.ReadRanges(planned, options, fs_options)
                    | "Copies" >> WriteCopies(options, work, fs_options)
                ),
                beam_options,
            )
        receipts = io.read_receipts(receipts_dir, [r.name for r in planned])
        fsutil.concatenate(
            [
                fsutil.join(work, "parts", part_name(copy, r))
                for copy in range(options.copies + 1)
                for r in planned
            ],
            options.output,
        )
        pool = load_pool(fsutil.join(work, POOL))
    finally:
        fsutil.delete_tree(work)
    totals: dict = {}
    for receipt in receipts.values():
        io.add_counts(totals, receipt)
    return {
        "input": options.input,
        "output": options.output,
        "copies": options.copies,
        "probability": options.probability,
        "seed": options.seed,
        "mentions_from": [r.path for r in others if r.number == 0],
        "pool": {kind: len(ms) for kind, ms in pool.items()},
        "sentences_written": totals["sentences"] * (options.copies + 1),
        **totals,
    }


def run(argv: Sequence[str]) -> dict:
    """``augment`` with the options of a command line (``etagger augment --help``)."""
    [options], beam_args = clioptions.parse(argv, AugmentOptions, prog="augment")
    return augment(options, beam_args)
