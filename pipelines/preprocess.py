"""Beam pipeline: CoNLL splits and raw-text corpora -> TFRecord shards of SequenceExamples
with precomputed ids, vocabularies, a GloVe matrix filtered to the corpus, and statistics.

Inputs and output may be on any filesystem Beam has (local, ``gs://``, ``s3://``). Each
input file is cut into byte ranges read in parallel (``pipelines.io``); each range becomes
one shard. Two straight pipelines run one after the other: the vocabulary pass (token
counts combined per key, then the vocabularies built from the counts alone) and the
encoding pass (each range's records written as its shard, with a receipt of its counts).

Output folder (appears whole or not at all):
  OUT/{split}-SSSSS-of-NNNNN.tfrecord  one shard per input range, records in input order
                                       (with --bert-handle, also each token's wordpiece ids;
                                       with --contextual, each token's encoder vector; with
                                       --soft-targets, a teacher's marginals: RunInference)
  OUT/vocab/*.txt                      one entry per line, line i = id i
                                       (with --vocab-from, that folder's)
  OUT/glove_filtered.npy               [len(words.txt), dim] float32 (with --vocab-from,
                                       that folder's, when it has one)
  OUT/preprocess.json                  the options and feature config used
  OUT/stats.json                       per split: sentences, tokens, GloVe coverage, ...
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import io as pyio
import json
import logging
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.io.tfrecordio import _TFRecordUtil

from etagger import clioptions, conll, features, fsutil, glove, ranges, schema, tagschemes
from etagger.errors import UsageError
from etagger.stored_vectors import ContextualSpec
from pipelines import io, token_arrays
from pipelines.options import PreprocessOptions, PreprocessRun

log = logging.getLogger(__name__)
SPLITS = ("train", "dev", "test")
RAW_SPLIT = "raw"
LENGTH_BIN = 10  # width of the sentence-length histogram bins in stats.json
ENCODE_BATCH = 512  # sentences per feature-extraction call
WORK_DIR = ".work"  # inside the staging folder: census, parts, receipts; gone before publishing
GLOVE_WORDS = "glove_words.txt"  # in WORK_DIR: vocabulary words that have a GloVe vector
GLOVE_MATRIX = "glove_filtered.npy"  # OUT/: the GloVe rows of the word vocabulary
# The splits a teacher labels for distillation: never dev or test, which measure the student.
SOFT_TARGET_SPLITS = ("train", RAW_SPLIT)


def _ragged_words(sentences: Sequence[conll.Sentence], column: str = "word"):
    import tensorflow as tf

    flat = [w for s in sentences for w in s.columns[column]]
    return tf.RaggedTensor.from_row_lengths(
        tf.constant(flat, tf.string), [len(s) for s in sentences]
    )


def _batches(
    sentences: Sequence[conll.Sentence], size: int = ENCODE_BATCH
) -> Iterable[Sequence[conll.Sentence]]:
    for first in range(0, len(sentences), size):
        yield sentences[first : first + size]


# ----------------------------------------------------------------------------- vocabularies


class VocabKey(NamedTuple):
    """What the vocabulary pass counts: an entry of a vocabulary, seen in a split."""

    vocab: str  # "word", "char", "shape", "pos", "chunk", "tag" or "gazetteer"
    entry: str
    split: str


class _VocabKeys(beam.DoFn):
    """RangeSentences -> (VocabKey, count in the range)."""

    def __init__(self, options: PreprocessOptions):
        self.options = options

    def process(self, read: io.RangeSentences):
        split = read.range.split
        counts: collections.Counter[VocabKey] = collections.Counter()
        names = []  # the training split's entities, for a gazetteer
        for batch in _batches(read.sentences):
            keys = features.vocab_keys(_ragged_words(batch), self.options.features)
            for name in ("word", "shape"):
                counts.update(
                    VocabKey(name, key.decode("utf-8"), split)
                    for key in keys[name].flat_values.numpy()
                )
            counts.update(
                VocabKey("char", key.decode("utf-8"), split)
                for key in keys["char"].flat_values.numpy()
            )
            for s in batch:
                for name in ("pos", "chunk"):
                    counts.update(VocabKey(name, v, split) for v in s.columns.get(name, ()))
                if "tag" in s.columns:
                    tags = tagschemes.convert_tags(
                        s.columns["tag"], self.options.input_scheme, self.options.tag_scheme
                    )
                    counts.update(VocabKey("tag", value, split) for value in tags)
                    if split == "train" and "train" in self.options.gazetteer:
                        names += [
                            (kind, s.words[a:b])
                            for kind, a, b in tagschemes.chunks(s.columns["tag"])
                        ]
        counts.update(
            VocabKey("gazetteer", entry, "train")
            for entry in features.gazetteer_entries(names, self.options.features)
        )
        yield from counts.items()


def build_vocabs(
    counts: Iterable[tuple[VocabKey, int]], options: PreprocessOptions
) -> tuple[dict[str, list[str]], np.ndarray, set[str]]:
    """Vocabularies from the training split, plus every word of any split found in GloVe
    (the raw text's words too, where ``raw_vocab`` reads them).

    Returns (vocabs, filtered GloVe matrix aligned with vocabs["word"], words in GloVe).
    Entries are ordered by falling training count, then alphabetically: deterministic.
    """
    train: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    all_words: set[str] = set()
    for (name, key, split), n in counts:  # a VocabKey, and its count
        if split == "train":
            train[name][key] += n
        if name == "word":
            all_words.add(key)
    vectors = glove.load_glove(options.glove, sorted(all_words))
    word_counts = train["word"]
    keep = {w for w, n in word_counts.items() if n >= options.min_count} | set(vectors)

    def ordered(counter, keys):
        return sorted(keys, key=lambda k: (-counter[k], k))

    vocabs = {"word": list(features.RESERVED["word"]) + ordered(word_counts, keep)}
    for name in ("char", "shape", "pos", "chunk", "tag"):
        if train[name]:
            vocabs[name] = list(features.RESERVED[name]) + ordered(train[name], train[name])
    if "tag" in vocabs and "O" in vocabs["tag"]:
        # "O" first so that tag id 0 is "nothing", whatever the counts say.
        vocabs["tag"] = ["O"] + [t for t in vocabs["tag"] if t != "O"]
    if options.gazetteer:
        entries = set(train["gazetteer"])
        for path in options.gazetteer:
            if path != "train":
                entries.update(features.read_gazetteer_file(path, options.features))
        vocabs["gazetteer"] = sorted(entries)
    matrix = glove.embedding_matrix(vocabs["word"], vectors)
    return vocabs, matrix, set(vectors)


def write_vocabs(
    out_dir: str,
    vocabs: dict[str, list[str]],
    glove_words: Iterable[str],
    matrix: np.ndarray | None = None,
) -> None:
    """OUT/vocab/*.txt, OUT/glove_filtered.npy (when given) and the GloVe word list the
    encoding pass reads (in the work folder)."""
    for name, entries in vocabs.items():
        features.write_vocab(fsutil.join(out_dir, "vocab", features.VOCAB_FILES[name]), entries)
    if matrix is not None:
        buffer = pyio.BytesIO()
        np.save(buffer, matrix)
        fsutil.write_bytes(fsutil.join(out_dir, GLOVE_MATRIX), buffer.getvalue())
    fsutil.write_text(
        fsutil.join(out_dir, WORK_DIR, GLOVE_WORDS), "".join(w + "\n" for w in sorted(glove_words))
    )


class ComputeVocabs(beam.PTransform):
    """RangeSentences of the labelled splits (and of raw text, for ``raw_vocab``) -> one
    element, the vocabularies, after writing OUT/vocab/*.txt and OUT/glove_filtered.npy into
    ``out_dir``. Counts are combined per key across ranges, so memory holds the vocabulary,
    never the corpus."""

    def __init__(self, options: PreprocessOptions, out_dir: str, fs_options: dict | None = None):
        super().__init__()
        self.options, self.out_dir, self.fs_options = options, out_dir, fs_options or {}

    def expand(self, read):
        return (
            read
            | "Keys" >> beam.ParDo(_VocabKeys(self.options))
            | "Count" >> beam.CombinePerKey(sum)
            | "AllCounts" >> beam.Map(lambda item: (None, item))
            | "Gather" >> beam.GroupByKey()
            | "BuildAndWrite"
            >> beam.ParDo(_BuildVocabs(self.options, self.out_dir, self.fs_options))
        )


class _BuildVocabs(io.FileSystemsDoFn):
    """(None, all (key, count) pairs) -> the vocabularies, after writing them."""

    def __init__(self, options: PreprocessOptions, out_dir: str, fs_options: dict):
        super().__init__(fs_options)
        self.options, self.out_dir = options, out_dir

    def process(self, item):
        vocabs, matrix, glove_words = build_vocabs(item[1], self.options)
        write_vocabs(self.out_dir, vocabs, glove_words, matrix)
        yield vocabs


def load_vocab_dir(vocab_from: str) -> tuple[dict[str, list[str]], list[str]]:
    """(vocabs, glove_words) of an earlier preprocess output, for tagging raw text."""
    vocabs = features.load_vocabs(fsutil.join(vocab_from, "vocab"))
    if "word" not in vocabs:
        raise FileNotFoundError(
            f"{vocab_from}: not a preprocess output (no vocab/words.txt) for --vocab-from"
        )
    # The vocabulary words that have a GloVe vector, looked up again in the GloVe source of
    # that run, for the coverage figures of stats.json.
    info_path = fsutil.join(vocab_from, "preprocess.json")
    info = json.loads(fsutil.read_text(info_path)) if fsutil.exists(info_path) else {}
    source = info.get("glove", glove.EMBEDDED)
    if source != glove.EMBEDDED and not fsutil.exists(source):
        log.warning(
            "GloVe file %s of %s is gone: GloVe coverage of raw text is not known",
            source,
            vocab_from,
        )
        return vocabs, []
    words = vocabs["word"][len(features.RESERVED["word"]) :]
    return vocabs, sorted(glove.load_glove(source, words))


# ----------------------------------------------------------------------------- encoding


def _to_lists(tensor) -> list:
    """Nested Python lists of a (ragged) tensor. RaggedTensor.to_list() slices row by row
    with TF ops in eager mode, which made it most of the preprocessing time; this converts
    the flat values and row splits to NumPy once and cuts the lists in Python."""
    values = tensor.flat_values if hasattr(tensor, "flat_values") else tensor
    out = values.numpy().tolist()
    for splits in reversed(getattr(tensor, "nested_row_splits", ())):
        bounds = splits.numpy().tolist()
        out = [out[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    return out


class Encoded(NamedTuple):
    """One sentence as a serialized SequenceExample, with its token counts for stats.json."""

    record: bytes
    tokens: int
    in_glove: int  # tokens whose word has a GloVe vector
    unknown: int  # tokens that map to UNK


class Encoder:
    """Sentences -> Encoded records; ids come from features.FeatureExtractor, the same TF
    ops the serving graph runs."""

    def __init__(
        self, options: PreprocessOptions, vocabs: dict[str, list[str]], glove_words: Iterable[str]
    ):
        self.options = options
        self.extractor = features.FeatureExtractor(vocabs, options.features)
        glove_words = set(glove_words)
        self.glove_ids = {i for i, w in enumerate(vocabs["word"]) if w in glove_words}
        self.wordpieces = None
        if options.bert_handle is not None:  # the tagger's own tokenizer: no train/serve skew
            from etagger.layers.contextual import WordPieces

            self.wordpieces = WordPieces(options.bert_handle)

    def __call__(
        self,
        sentences: Sequence[conll.Sentence],
        arrays: Mapping[str, Sequence[np.ndarray | None]] | None = None,
    ) -> Iterable[Encoded]:
        """The records of ``sentences``; ``arrays``: name -> per sentence a [T, D] array to
        store as that float16 feature (None: the sentence has none)."""
        import tensorflow as tf

        columns: dict[str, Any] = {
            name: _ragged_words(sentences, name)
            for name in ("word", "pos", "chunk")
            if name in sentences[0].columns
        }
        if "tag" in sentences[0].columns:
            tags = [
                tagschemes.convert_tags(
                    s.columns["tag"], self.options.input_scheme, self.options.tag_scheme
                )
                for s in sentences
            ]
            flat = [t for row in tags for t in row]
            columns["tag"] = tf.RaggedTensor.from_row_lengths(
                tf.constant(flat, tf.string), [len(r) for r in tags]
            )
        ids = {name: _to_lists(value) for name, value in self.extractor(columns).items()}
        if self.wordpieces is not None:
            pieces = self.wordpieces(columns["word"].flat_values)
            ids["wordpiece_ids"] = _to_lists(columns["word"].with_flat_values(pieces))
        for i, s in enumerate(sentences):
            sequence: dict[str, Any] = {name: list(values) for name, values in s.columns.items()}
            sequence.update({name: value[i] for name, value in ids.items()})
            if "tag_id" in sequence and -1 in sequence["tag_id"]:
                line = s.line + sequence["tag_id"].index(-1)
                raise conll.ConllFormatError(s.source, line, "tag not seen in the training split")
            for name, values in (arrays or {}).items():
                if values[i] is not None:
                    sequence[name] = values[i]
            if s.offsets:
                sequence["start"] = [a for a, _ in s.offsets]
                sequence["end"] = [b for _, b in s.offsets]
            context = {
                "source": fsutil.basename(s.source),
                "index": s.index,
                "leading": s.leading,
                "length": len(s),
            }
            in_glove = sum(1 for w in sequence["word_id"] if w in self.glove_ids)
            unknown = sum(1 for w in sequence["word_id"] if w == features.UNK_ID)
            yield Encoded(schema.encode(context, sequence), len(s), in_glove, unknown)


def range_stats(encoded: Iterable[Encoded], sentences: Sequence[conll.Sentence]) -> dict:
    """One range's counts: sentences, tokens, GloVe and UNK tokens, length histogram bins and
    the tags as written in the input."""
    stats: dict[str, Any] = {
        "sentences": 0,
        "tokens": 0,
        "in_glove": 0,
        "unknown": 0,
        "lengths": {},
        "tag_counts": {},
    }
    for e in encoded:
        io.add_counts(
            stats,
            {
                "sentences": 1,
                "tokens": e.tokens,
                "in_glove": e.in_glove,
                "unknown": e.unknown,
                "lengths": {str(e.tokens // LENGTH_BIN): 1},
            },
        )
    io.add_counts(
        stats["tag_counts"],
        collections.Counter(t for s in sentences for t in s.columns.get("tag", ())),
    )
    return stats


@functools.lru_cache(maxsize=2)
def _encoder(options: PreprocessOptions, out_dir: str, run_id: str) -> Encoder:
    """The Encoder of the vocabularies in ``out_dir``, once per run and worker process: the
    Dask runner sets a DoFn up again for every range. ``run_id`` tells runs apart, since a
    later run may write other vocabularies to the same staging folder."""
    vocabs = features.load_vocabs(fsutil.join(out_dir, "vocab"))
    glove_words = fsutil.read_text(fsutil.join(out_dir, WORK_DIR, GLOVE_WORDS)).split("\n")[:-1]
    return Encoder(options, vocabs, glove_words)


class _EncodeRange(io.FileSystemsDoFn):
    """RangeArrays -> the range's shard WORK/parts/<range>.tfrecord (records in input
    order), then its receipt WORK/receipts/<range>.json; yields the range's name. The
    vocabularies are read from the output folder when the DoFn is set up."""

    def __init__(self, options: PreprocessOptions, out_dir: str, fs_options: dict | None = None):
        super().__init__(fs_options or {})
        self.options, self.out_dir = options, out_dir
        self.work_dir = fsutil.join(out_dir, WORK_DIR)
        self.run_id = uuid.uuid4().hex

    def setup(self):
        super().setup()
        self.encoder = _encoder(self.options, self.out_dir, self.run_id)

    def process(self, item: io.RangeArrays):
        read = item.read
        counts = []
        with fsutil.atomic_write(
            fsutil.join(self.work_dir, "parts", f"{read.range.name}.tfrecord"), "wb"
        ) as f:
            for first in range(0, len(read.sentences), ENCODE_BATCH):
                batch = read.sentences[first : first + ENCODE_BATCH]
                arrays = {k: v[first : first + ENCODE_BATCH] for k, v in item.arrays.items()}
                for encoded in self.encoder(batch, arrays):
                    _TFRecordUtil.write_record(f, encoded.record)
                    counts.append(encoded._replace(record=b""))  # the counts, not the bytes
        receipt = {
            **range_stats(counts, read.sentences),
            "read": read.counts._asdict(),
            "worker": io.worker_name(),
        }
        if "soft_tags" in item.arrays:
            receipt["soft_targets"] = sum(a is not None for a in item.arrays["soft_tags"])
        io.write_receipt(fsutil.join(self.work_dir, "receipts"), read.range.name, receipt)
        yield read.range.name


# ----------------------------------------------------------------------------- finishing


def publish_shards(planned: Sequence[ranges.FileRange], out_dir: str) -> None:
    """Renames each range's part to its shard, {split}-SSSSS-of-NNNNN.tfrecord, in input order."""
    by_split: dict[str, list[ranges.FileRange]] = {}
    for r in planned:
        by_split.setdefault(r.split, []).append(r)
    for split, parts in by_split.items():
        parts.sort(key=lambda r: (r.file_number, r.number))
        fsutil.move(
            [fsutil.join(out_dir, WORK_DIR, "parts", f"{r.name}.tfrecord") for r in parts],
            [
                fsutil.join(out_dir, f"{split}-{i:05d}-of-{len(parts):05d}.tfrecord")
                for i in range(len(parts))
            ],
        )


def split_stats(
    receipts: dict[str, dict], planned: Sequence[ranges.FileRange], options: PreprocessOptions
) -> dict:
    """stats.json: per split, the sums of its ranges' receipts and the figures made of them;
    an error (or, lenient, a warning) for a CoNLL file without a sentence."""
    totals: dict[str, dict] = {}
    per_file: dict[str, int] = {}
    for r in planned:
        io.add_counts(
            totals.setdefault(r.split, {}),
            {k: v for k, v in receipts[r.name].items() if k != "worker"},
        )
        per_file[r.path] = per_file.get(r.path, 0) + receipts[r.name]["sentences"]
    for r in planned:
        if (
            r.kind == "conll"
            and not per_file[r.path]
            and not totals[r.split]["read"]["skipped_sentences"]
        ):
            if not options.lenient:
                raise conll.ConllFormatError(r.path, 1, "no sentences in file")
            log.warning("%s:1: no sentences in file", r.path)
    out = {}
    for split, t in sorted(totals.items()):
        tokens = max(t["tokens"], 1)
        out[split] = {
            "sentences": t["sentences"],
            "tokens": t["tokens"],
            "glove_token_coverage": round(t["in_glove"] / tokens, 6),
            "unknown_token_rate": round(t["unknown"] / tokens, 6),
            # [first length, last length, sentences] per bin, shortest first.
            "length_histogram": [
                [int(b) * LENGTH_BIN, int(b) * LENGTH_BIN + LENGTH_BIN - 1, n]
                for b, n in sorted(t["lengths"].items(), key=lambda kv: int(kv[0]))
            ],
        }
        if "soft_targets" in t:
            out[split]["soft_targets"] = t["soft_targets"]
        if split == RAW_SPLIT:
            out[split]["skipped_lines"] = t["read"]["bad_lines"]
            continue
        out[split]["skipped_sentences"] = t["read"]["skipped_sentences"]
        out[split]["skipped_lines"] = t["read"]["skipped_lines"]
        if t["tag_counts"]:
            out[split]["tag_counts"] = dict(sorted(t["tag_counts"].items()))
    return out


# ----------------------------------------------------------------------------- pipeline


def resolve_inputs(
    data_dir: str | None, raw: Sequence[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """(split -> CoNLL file, path -> split for every input file), in split then path order."""
    inputs = {}
    if data_dir:
        inputs = {
            split: fsutil.join(data_dir, f"{split}.txt")
            for split in SPLITS
            if fsutil.exists(fsutil.join(data_dir, f"{split}.txt"))
        }
    splits = {path: split for split, path in inputs.items()}
    if raw:
        splits.update((m.path, RAW_SPLIT) for m in fsutil.match(raw))
    return inputs, splits


def reads_packs(options: PreprocessOptions) -> bool:
    """Whether the --contextual encoder (--contextual-pack-tokens) or the --soft-targets
    teacher (its ``bert_pack_tokens``) reads packs of consecutive sentences."""
    if options.contextual is not None and options.contextual_pack_tokens:
        return True
    if options.soft_targets is not None:
        from etagger.predictor import document_context, read_meta

        return bool(document_context(read_meta(options.soft_targets)))
    return False


def plan(splits: dict[str, str], options: PreprocessOptions) -> list[ranges.FileRange]:
    """The input ranges: at least ``num_shards`` per file, at most ``range_bytes`` each. When
    a model of the run reads packs of sentences (``reads_packs``), a CoNLL file is one range,
    since a pack may run on across any byte boundary (a raw line is a document)."""
    kinds = {path: "raw" if split == RAW_SPLIT else "conll" for path, split in splits.items()}
    whole = [p for p, kind in kinds.items() if kind == "conll"] if reads_packs(options) else []
    return io.plan_ranges(
        kinds, options.range_bytes, splits, whole=whole, min_ranges=options.num_shards
    )


def resolve_input_scheme(inputs: dict[str, str], options: PreprocessOptions) -> PreprocessOptions:
    """Fills in ``input_scheme`` from the training file when it is "auto"."""
    if options.input_scheme != "auto" or "train" not in inputs:
        return (
            options
            if options.input_scheme != "auto"
            else dataclasses.replace(options, input_scheme="IOB2")
        )
    tags = (
        s.columns["tag"] for s in conll.read_conll(inputs["train"], options.columns, lenient=True)
    )
    return dataclasses.replace(options, input_scheme=tagschemes.detect_scheme(tags))


class EncodeRanges(beam.PTransform):
    """RangeSentences -> the names of the ranges whose shards and receipts are written; the
    ``handlers``' RunInference steps first add their per-token arrays (encoder vectors,
    soft targets) to each range."""

    def __init__(
        self,
        options: PreprocessOptions,
        out_dir: str,
        handlers: Sequence[token_arrays.TokenArraysHandler],
        fs_options: dict,
    ):
        super().__init__()
        self.options, self.out_dir, self.fs_options = options, out_dir, fs_options
        self.handlers = handlers

    def expand(self, read):
        ranges_ = read | "NoArraysYet" >> beam.Map(token_arrays.to_arrays).with_output_types(
            io.RangeArrays
        )
        for handler in self.handlers:
            ranges_ = ranges_ | f"Add_{handler.name}" >> token_arrays.AddTokenArrays(handler)
        return ranges_ | "WriteShards" >> beam.ParDo(
            _EncodeRange(self.options, self.out_dir, self.fs_options)
        )


def array_handlers(
    options: PreprocessOptions, out_dir: str, held_out: frozenset[str], fs_options: dict
) -> list[token_arrays.TokenArraysHandler]:
    """The RunInference steps that --contextual and --soft-targets ask for. The teacher's tags
    are checked against the vocabulary in ``out_dir`` here, before any worker loads it."""
    handlers: list[token_arrays.TokenArraysHandler] = []
    spec = contextual_spec(options)
    if spec is not None:
        handlers.append(token_arrays.ContextualHandler(spec))
    if options.soft_targets is not None:
        from etagger.predictor import read_meta

        tags = features.load_vocabs(fsutil.join(out_dir, "vocab")).get("tag", [])
        teacher = read_meta(options.soft_targets).get("tags")
        if teacher is None:
            raise UsageError(
                f"--soft-targets {options.soft_targets}: exported without its tag list "
                "(export it again)"
            )
        if sorted(teacher) != sorted(tags):
            raise UsageError(
                f"--soft-targets {options.soft_targets}: its tags {sorted(teacher)} are not "
                f"the data's {sorted(tags)}"
            )
        handlers.append(
            token_arrays.SoftTargetsHandler(
                options.soft_targets, tags, held_out, SOFT_TARGET_SPLITS, fs_options
            )
        )
    return handlers


def contextual_spec(options: PreprocessOptions) -> ContextualSpec | None:
    if options.contextual is None:
        return None
    return ContextualSpec(
        options.contextual,
        options.contextual_pooling,
        options.contextual_layers,
        options.contextual_max_pieces,
        options.contextual_pack_tokens,
    )


def held_out_keys(paths: Sequence[str], columns: Sequence[str]) -> frozenset[str]:
    """``conll.sentence_key`` of every sentence of the CoNLL files ``paths``."""
    return frozenset(
        conll.sentence_key(s.words) for path in paths for s in conll.read_conll(path, columns)
    )


def run_passes(
    planned: Sequence[ranges.FileRange],
    staging: str,
    options: PreprocessOptions,
    beam_options,
    where: PreprocessRun,
    held_out: frozenset[str] = frozenset(),
) -> dict[str, dict]:
    """The census, vocabulary and encoding passes; returns the receipts of the ranges."""
    work_dir = fsutil.join(staging, WORK_DIR)
    fs_options = io.filesystem_options(beam_options)
    planned = io.take_census(list(planned), options, beam_options, work_dir)
    if where.vocab_from:
        vocabs, glove_words = load_vocab_dir(where.vocab_from)
        write_vocabs(staging, vocabs, glove_words)
        # The same vocabulary has the same GloVe rows: carrying them over lets `train --data`
        # read this output on its own.
        matrix = fsutil.join(where.vocab_from, GLOVE_MATRIX)
        if fsutil.exists(matrix):
            fsutil.write_bytes(fsutil.join(staging, GLOVE_MATRIX), fsutil.read_bytes(matrix))
    else:
        vocab_splits = SPLITS + ((RAW_SPLIT,) if options.raw_vocab else ())
        counted = [r for r in planned if r.split in vocab_splits]
        io.run(
            lambda p: (
                p
                | "ReadCounted" >> io.ReadRanges(counted, options, fs_options)
                | "Vocabularies" >> ComputeVocabs(options, staging, fs_options)
            ),
            beam_options,
        )
        if not fsutil.exists(fsutil.join(work_dir, GLOVE_WORDS)):
            raise RuntimeError("the vocabulary pass wrote no vocabularies: the runner lost work")
    handlers = array_handlers(options, staging, held_out, fs_options)
    with io.Progress("preprocess", planned, fsutil.join(work_dir, "receipts"), quiet=where.quiet):
        io.run(
            lambda p: (
                p
                | "Read" >> io.ReadRanges(planned, options, fs_options)
                | "Encode" >> EncodeRanges(options, staging, handlers, fs_options)
            ),
            beam_options,
        )
    receipts = io.read_receipts(fsutil.join(work_dir, "receipts"), [r.name for r in planned])
    publish_shards(planned, staging)
    return receipts


def bert_encoder_dir(handle: str | None) -> str | None:
    """The absolute encoder folder of a --bert-handle (checked to exist), or None."""
    if handle is None:
        return None
    from etagger.layers.contextual import resolve_handle

    return str(resolve_handle(handle))


def check_run(
    where: PreprocessRun,
    options: PreprocessOptions,
    inputs: dict[str, str],
    splits: dict[str, str],
) -> None:
    """One-line errors for option sets that cannot run, before anything is written."""
    if where.data_dir and "train" not in inputs and not where.vocab_from:
        raise FileNotFoundError(f"{where.data_dir}/train.txt is needed to build vocabularies")
    if not splits:
        raise UsageError("nothing to preprocess: give --data-dir and/or --raw")
    if not inputs.get("train") and not where.vocab_from:
        raise UsageError("raw text alone needs --vocab-from DIR (an earlier preprocess output)")
    if options.contextual_pack_tokens and options.contextual is None:
        raise UsageError("--contextual-pack-tokens needs --contextual ENCODER")
    if options.raw_vocab and (where.vocab_from or not where.raw):
        raise UsageError(
            "--raw-vocab needs --raw text and builds its own vocabularies: no --vocab-from"
        )


def resolve_options(options: PreprocessOptions, inputs: dict[str, str]) -> PreprocessOptions:
    """The options with local paths made absolute, encoder handles resolved to their
    encoder folders, a teacher's held-out files defaulting to the dev and test inputs, and
    the input tag scheme read from the training file when "auto"."""
    options = dataclasses.replace(
        options,
        bert_handle=bert_encoder_dir(options.bert_handle),
        contextual=bert_encoder_dir(options.contextual),
        soft_targets=(
            os.path.abspath(options.soft_targets)
            if options.soft_targets is not None and fsutil.is_local(options.soft_targets)
            else options.soft_targets
        ),
        held_out=tuple(options.held_out)
        or (
            tuple(inputs[split] for split in ("dev", "test") if split in inputs)
            if options.soft_targets is not None
            else ()
        ),
        gazetteer=tuple(
            g if g == "train" or not fsutil.is_local(g) else os.path.abspath(g)
            for g in options.gazetteer
        ),
    )
    return resolve_input_scheme(inputs, options)


def output_config(
    where: PreprocessRun, options: PreprocessOptions, inputs: dict[str, str], held_out: int
) -> dict:
    """OUT/preprocess.json: the options, the inputs and the fingerprints training checks."""
    config = {
        **dataclasses.asdict(options),
        "inputs": inputs,
        "raw": list(where.raw),
        "vocab_from": where.vocab_from,
    }
    if options.bert_handle is not None:
        from etagger.layers.contextual import vocab_sha256

        config["bert_vocab_sha256"] = vocab_sha256(options.bert_handle)
    spec = contextual_spec(options)
    if spec is not None:
        config["contextual_fingerprint"] = spec.fingerprint()
    if options.soft_targets is not None:
        config["soft_target_splits"] = list(SOFT_TARGET_SPLITS)
        config["held_out_sentences"] = held_out
    return config


def preprocess(
    where: PreprocessRun, options: PreprocessOptions, beam_args: Sequence[str] = ()
) -> dict:
    """Runs the passes and publishes the output folder; returns the stats."""
    beam_options = io.pipeline_options(beam_args)
    inputs, splits = resolve_inputs(where.data_dir, list(where.raw))
    check_run(where, options, inputs, splits)
    options = resolve_options(options, inputs)
    staging = fsutil.prepare_output(where.out, where.overwrite, ".staging")
    try:
        planned = plan(splits, options)
        held_out = (
            held_out_keys(options.held_out, options.columns)
            if options.soft_targets is not None
            else frozenset()
        )
        receipts = run_passes(planned, staging, options, beam_options, where, held_out)
        stats = split_stats(receipts, planned, options)
        fsutil.write_text(
            fsutil.join(staging, "stats.json"), json.dumps(stats, indent=2, sort_keys=True)
        )
        config = output_config(where, options, inputs, len(held_out))
        fsutil.write_text(
            fsutil.join(staging, "preprocess.json"), json.dumps(config, indent=2, sort_keys=True)
        )
        fsutil.delete_tree(fsutil.join(staging, WORK_DIR))
        fsutil.publish_folder(staging, where.out)
    except BaseException:
        # A failed run leaves nothing behind: no output folder, no half-written staging.
        fsutil.delete_tree(staging)
        raise
    return stats


def run(argv: Sequence[str]) -> dict:
    """``preprocess`` with the options of a command line (``etagger preprocess --help``)."""
    [where, options], beam_args = clioptions.parse(
        argv, PreprocessRun, PreprocessOptions, prog="preprocess"
    )
    return preprocess(where, options, beam_args)
