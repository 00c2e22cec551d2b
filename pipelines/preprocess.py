"""Beam pipeline: CoNLL splits and raw-text corpora -> sharded TFRecords of SequenceExamples
with precomputed ids, vocabularies, a GloVe matrix filtered to the corpus, and statistics.

Output folder (appears atomically, complete or not at all):
  OUT/{split}-SSSSS-of-NNNNN.tfrecord  records sorted by sentence index within each shard
                                       (with --bert-handle, also each token's wordpiece ids)
  OUT/vocab/*.txt                      one entry per line, line i = id i
  OUT/glove_filtered.npy               [len(words.txt), dim] float32
  OUT/preprocess.json                  the options and feature config used
  OUT/stats.json                       per split: sentences, tokens, GloVe coverage, ...
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import logging
import os
import shutil
import zlib
from pathlib import Path
from typing import Iterable, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from etagger import conll, features, glove, schema
from pipelines.io import ReadConll, ReadRawText  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)
SPLITS = ("train", "dev", "test")
RAW_SPLIT = "raw"
LENGTH_BIN = 10  # width of the sentence-length histogram bins in stats.json


@dataclasses.dataclass(frozen=True)
class PreprocessOptions:
    """Everything that determines the output; saved as OUT/preprocess.json."""

    columns: tuple[str, ...] = conll.CONLL2003_COLUMNS
    input_scheme: str = "auto"  # tag scheme of the input files; auto = detect from train
    tag_scheme: str = "IOBES"  # scheme of tag_id, the one the model trains in
    min_count: int = 1  # training words seen fewer times (and not in GloVe) map to UNK
    glove: str = glove.EMBEDDED
    num_shards: int = 4
    max_tokens: int = 1000  # longer sentences are an error (or a counted skip when lenient)
    lenient: bool = False
    wikitext: bool = False  # raw text uses wikitext's " @-@ " markers
    features: features.FeatureConfig = features.FeatureConfig()
    bert_handle: str | None = None  # a local BERT encoder: also store each token's wordpiece ids
    gazetteer: tuple[str, ...] = ()  # "train" (the training split's entities) and/or user files


# ----------------------------------------------------------------------------- reading

# ReadConll and ReadRawText live in pipelines/io.py, shared with tag_corpus; imported above.


# ----------------------------------------------------------------------------- analysis

def _ragged_words(sentences: Sequence[conll.Sentence], column: str = "word"):
    import tensorflow as tf

    flat = [w for s in sentences for w in s.columns[column]]
    return tf.RaggedTensor.from_row_lengths(tf.constant(flat, tf.string), [len(s) for s in sentences])


class _VocabKeys(beam.DoFn):
    """Batches of (split, Sentence) -> ((vocab, key, split), count_in_batch)."""

    def __init__(self, options: PreprocessOptions):
        self.options = options

    def process(self, batch):
        sentences = [s for _, s in batch]
        keys = features.vocab_keys(_ragged_words(sentences), self.options.features)
        counts = collections.Counter()
        split_of = [split for split, s in batch for _ in range(len(s))]
        for name in ("word", "shape"):
            for split, key in zip(split_of, keys[name].flat_values.numpy()):
                counts[(name, key.decode("utf-8"), split)] += 1
        char_rows = keys["char"].values.row_lengths().numpy()
        chars = iter(keys["char"].flat_values.numpy())
        for split, n in zip(split_of, char_rows):
            for _ in range(n):
                counts[("char", next(chars).decode("utf-8"), split)] += 1
        names = []  # the training split's entities, for a gazetteer
        for split, s in batch:
            for name in ("pos", "chunk"):
                for value in s.columns.get(name, ()):
                    counts[(name, value, split)] += 1
            if "tag" in s.columns:
                scheme = self.options.input_scheme
                for value in conll.convert_tags(s.columns["tag"], scheme, self.options.tag_scheme):
                    counts[("tag", value, split)] += 1
                if split == "train" and "train" in self.options.gazetteer:
                    names += [(kind, s.columns["word"][a:b]) for kind, a, b in conll.chunks(s.columns["tag"])]
        for entry in features.gazetteer_entries(names, self.options.features):
            counts[("gazetteer", entry, "train")] += 1
        yield from counts.items()


def build_vocabs(counts: Iterable[tuple[tuple[str, str, str], int]], options: PreprocessOptions
                 ) -> tuple[dict[str, list[str]], np.ndarray, set[str]]:
    """Vocabularies from the training split, plus every word of any split found in GloVe.

    Returns (vocabs, filtered GloVe matrix aligned with vocabs["word"], words in GloVe).
    Entries are ordered by falling training count, then alphabetically: deterministic.
    """
    train: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    all_words: set[str] = set()
    for (name, key, split), n in counts:
        if split == "train":
            train[name][key] += n
        if name == "word":
            all_words.add(key)
    vectors = glove.load_glove(options.glove, sorted(all_words))
    word_counts = train["word"]
    keep = {w for w, n in word_counts.items() if n >= options.min_count} | set(vectors)
    ordered = lambda counter, keys: sorted(keys, key=lambda k: (-counter[k], k))
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


class ComputeVocabs(beam.PTransform):
    """(split, Sentence) -> a single-element PCollection: (vocabs, glove_words) after
    writing OUT/vocab/*.txt and OUT/glove_filtered.npy into ``out_dir``."""

    def __init__(self, options: PreprocessOptions, out_dir: str):
        super().__init__()
        self.options, self.out_dir = options, out_dir

    def expand(self, keyed_sentences):
        options, out_dir = self.options, self.out_dir

        def build_and_write(_, counts):
            vocabs, matrix, glove_words = build_vocabs(counts, options)
            for name, entries in vocabs.items():
                features.write_vocab(Path(out_dir) / "vocab" / features.VOCAB_FILES[name], entries)
            with conll.atomic_write(Path(out_dir) / "glove_filtered.npy", "wb") as f:
                np.save(f, matrix)
            yield vocabs, sorted(glove_words)

        counts = (keyed_sentences
                  | "BatchForVocab" >> beam.BatchElements(min_batch_size=64, max_batch_size=512)
                  | beam.ParDo(_VocabKeys(options))
                  | beam.CombinePerKey(sum))
        return (keyed_sentences.pipeline
                | "VocabSeed" >> beam.Create([None])
                | beam.FlatMap(build_and_write, counts=beam.pvalue.AsList(counts)))


def load_vocab_dir(vocab_from: str) -> tuple[dict[str, list[str]], list[str]]:
    """(vocabs, glove_words) of an earlier preprocess output, for tagging raw text."""
    vocabs = features.load_vocabs(Path(vocab_from) / "vocab")
    # The vocabulary words that have a GloVe vector, looked up again in the GloVe source of
    # that run (returning [] here made stats.json report 0 GloVe coverage for raw text).
    info_path = Path(vocab_from) / "preprocess.json"
    source = json.loads(info_path.read_text()).get("glove", glove.EMBEDDED) if info_path.exists() else glove.EMBEDDED
    if source != glove.EMBEDDED and not Path(source).exists():
        log.warning("GloVe file %s of %s is gone: GloVe coverage of raw text is not known", source, vocab_from)
        return vocabs, []
    words = vocabs["word"][len(features.RESERVED["word"]):]
    return vocabs, sorted(glove.load_glove(source, words))


# ----------------------------------------------------------------------------- encoding

class _EncodeBatch(beam.DoFn):
    """Batches of (split, Sentence) -> (split, shard, sort_key, record bytes); ids come
    from features.FeatureExtractor, the same TF ops the serving graph runs."""

    def __init__(self, options: PreprocessOptions):
        self.options = options
        self.extractor = None
        self.wordpieces = None
        self.sentences = Metrics.counter("preprocess", "sentences")
        self.tokens = Metrics.counter("preprocess", "tokens")

    def setup(self):
        if self.options.bert_handle is not None:  # the tagger's own tokenizer: no train/serve skew
            from etagger.layers.contextual import WordPieces

            self.wordpieces = WordPieces(self.options.bert_handle)

    def process(self, batch, vocab_info):
        vocabs, glove_words = vocab_info
        if self.extractor is None:  # side inputs are not available in setup()
            self.extractor = features.FeatureExtractor(vocabs, self.options.features)
            glove_words = set(glove_words)
            self.glove_ids = {i for i, w in enumerate(vocabs["word"]) if w in glove_words}
        # A batch may mix labelled CoNLL sentences and raw text: encode each kind on its own.
        groups = collections.defaultdict(list)
        for item in batch:
            groups[tuple(item[1].columns)].append(item)
        for group in groups.values():
            yield from self._encode(group)

    def _encode(self, batch):
        import tensorflow as tf

        sentences = [s for _, s in batch]
        columns = {name: _ragged_words(sentences, name)
                   for name in ("word", "pos", "chunk") if name in sentences[0].columns}
        if "tag" in sentences[0].columns:
            tags = [conll.convert_tags(s.columns["tag"], self.options.input_scheme, self.options.tag_scheme)
                    for s in sentences]
            flat = [t for row in tags for t in row]
            columns["tag"] = tf.RaggedTensor.from_row_lengths(tf.constant(flat, tf.string), [len(r) for r in tags])
        ids = {name: _to_lists(value) for name, value in self.extractor(columns).items()}
        if self.wordpieces is not None:
            pieces = self.wordpieces(columns["word"].flat_values)
            ids["wordpiece_ids"] = _to_lists(columns["word"].with_flat_values(pieces))
        for i, (split, s) in enumerate(batch):
            sequence = {name: list(values) for name, values in s.columns.items()}
            sequence.update({name: value[i] for name, value in ids.items()})
            if "tag_id" in sequence and -1 in sequence["tag_id"]:
                line = s.line + sequence["tag_id"].index(-1)
                raise conll.ConllFormatError(s.source, line, "tag not seen in the training split")
            if s.offsets:
                sequence["start"] = [a for a, _ in s.offsets]
                sequence["end"] = [b for _, b in s.offsets]
            source = os.path.basename(s.source)
            record = schema.encode({"source": source, "index": s.index, "leading": s.leading, "length": len(s)},
                                   sequence)
            self.sentences.inc()
            self.tokens.inc(len(s))
            in_glove = sum(1 for w in sequence["word_id"] if w in self.glove_ids)
            unknown = sum(1 for w in sequence["word_id"] if w == features.UNK_ID)
            # A stable hash (not Python's salted hash()) keeps shard contents reproducible.
            shard = zlib.crc32(f"{source}:{s.index}".encode()) % self.options.num_shards
            yield split, shard, (source, s.index), record, (len(s), in_glove, unknown)


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


class EncodeRecords(beam.PTransform):
    """(split, Sentence) -> (split, shard, sort_key, record, (tokens, in_glove, unknown))."""

    def __init__(self, options: PreprocessOptions, vocab_info):
        super().__init__()
        self.options, self.vocab_info = options, vocab_info

    def expand(self, keyed_sentences):
        return (keyed_sentences
                | "BatchForEncode" >> beam.BatchElements(min_batch_size=64, max_batch_size=512)
                | beam.ParDo(_EncodeBatch(self.options), vocab_info=self.vocab_info))


class WriteShards(beam.PTransform):
    """Encoded records -> OUT/{split}-SSSSS-of-NNNNN.tfrecord, each written atomically with
    its records sorted by sentence, so the same input always gives the same bytes."""

    def __init__(self, out_dir: str, num_shards: int):
        super().__init__()
        self.out_dir, self.num_shards = out_dir, num_shards

    def expand(self, encoded):
        out_dir, num_shards = self.out_dir, self.num_shards

        def write(key, records):
            import tensorflow as tf

            split, shard = key
            path = Path(out_dir) / f"{split}-{shard:05d}-of-{num_shards:05d}.tfrecord"
            tmp = path.with_name(f".{path.name}.tmp")
            with tf.io.TFRecordWriter(str(tmp)) as writer:
                for _, record in sorted((r for r in records if r is not None), key=lambda r: r[0]):
                    writer.write(record)
            os.replace(tmp, path)
            yield str(path)

        keyed = encoded | beam.Map(lambda e: ((e[0], e[1]), (e[2], e[3])))
        # Every split gets all num_shards files, empty ones included, as "-of-N" promises.
        every_shard = (encoded
                       | "Splits" >> beam.Map(lambda e: e[0])
                       | beam.Distinct()
                       | beam.FlatMap(lambda split: [((split, shard), None) for shard in range(num_shards)]))
        return ((keyed, every_shard)
                | beam.Flatten()
                | beam.GroupByKey()
                | beam.FlatMapTuple(write))


class SplitStats(beam.PTransform):
    """Encoded records -> one dict: split -> sentences, tokens, GloVe coverage, lengths, tags."""

    def expand(self, encoded):
        def per_sentence(e):
            split, _, _, _, (length, in_glove, unknown) = e
            return split, (1, length, in_glove, unknown, collections.Counter({length // LENGTH_BIN: 1}))

        def add(rows):
            rows = list(rows)
            histogram = sum((r[4] for r in rows), collections.Counter())
            return (sum(r[0] for r in rows), sum(r[1] for r in rows), sum(r[2] for r in rows),
                    sum(r[3] for r in rows), histogram)

        def as_dict(items):
            out = {}
            for split, (sentences, tokens, in_glove, unknown, histogram) in sorted(items):
                out[split] = {
                    "sentences": sentences, "tokens": tokens,
                    "glove_token_coverage": round(in_glove / max(tokens, 1), 6),
                    "unknown_token_rate": round(unknown / max(tokens, 1), 6),
                    # [first length, last length, sentences] per bin, shortest first.
                    "length_histogram": [[b * LENGTH_BIN, b * LENGTH_BIN + LENGTH_BIN - 1, n]
                                         for b, n in sorted(histogram.items())],
                }
            return out

        return (encoded | beam.Map(per_sentence) | beam.CombinePerKey(add)
                | beam.combiners.ToList() | beam.Map(as_dict))


def _tag_counts(keyed_sentences):
    """(split, Sentence) -> one dict: split -> {tag: count} of the tags as written in the input."""
    return (keyed_sentences
            | beam.FlatMap(lambda kv: [((kv[0], t), 1) for t in kv[1].columns.get("tag", ())])
            | beam.CombinePerKey(sum)
            | beam.combiners.ToList()
            | beam.Map(lambda items: {split: dict(sorted((t, n) for (s2, t), n in items if s2 == split))
                                      for split in sorted({s for (s, _), _ in items})}))


# ----------------------------------------------------------------------------- pipeline

def build_pipeline(p: beam.Pipeline, inputs: dict[str, str], raw: Sequence[str], out_dir: str,
                   options: PreprocessOptions, vocab_from: str | None = None) -> None:
    """Adds the whole preprocessing graph to ``p``; everything is written under ``out_dir``."""
    parts = [p | f"Read_{split}" >> ReadConll(path, options) | f"Key_{split}" >> beam.Map(lambda s, k=split: (k, s))
             for split, path in inputs.items()]
    parts += [p | f"ReadRaw_{i}" >> ReadRawText(pattern, options) | f"KeyRaw_{i}" >> beam.Map(lambda s: (RAW_SPLIT, s))
              for i, pattern in enumerate(raw)]
    keyed = parts | "AllSplits" >> beam.Flatten()
    if vocab_from:
        vocab_info = p | "VocabFrom" >> beam.Create([load_vocab_dir(vocab_from)])
    else:
        labelled = [part for part, split in zip(parts, inputs) if split in SPLITS]
        vocab_info = labelled | "Labelled" >> beam.Flatten() | ComputeVocabs(options, out_dir)
    encoded = keyed | EncodeRecords(options, beam.pvalue.AsSingleton(vocab_info))
    _ = encoded | WriteShards(out_dir, options.num_shards)
    stats = encoded | SplitStats()
    tag_counts = _tag_counts(keyed)

    def write_stats(split_stats, tags):
        for split, counts in tags.items():
            split_stats.setdefault(split, {})["tag_counts"] = counts
        with conll.atomic_write(Path(out_dir) / "stats.json") as f:
            json.dump(split_stats, f, indent=2, sort_keys=True)

    _ = stats | beam.Map(write_stats, tags=beam.pvalue.AsSingleton(tag_counts))


def resolve_input_scheme(inputs: dict[str, str], options: PreprocessOptions) -> PreprocessOptions:
    """Fills in ``input_scheme`` from the training file when it is "auto"."""
    if options.input_scheme != "auto" or "train" not in inputs:
        return options if options.input_scheme != "auto" else dataclasses.replace(options, input_scheme="IOB2")
    tags = (s.columns["tag"] for s in conll.read_conll(inputs["train"], options.columns, lenient=True))
    return dataclasses.replace(options, input_scheme=conll.detect_scheme(tags))


def prepare_output(out: str, overwrite: bool) -> Path:
    """A fresh staging folder beside ``out``; refuses an existing ``out`` unless overwrite."""
    out_path = Path(out)
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    staging = out_path.with_name(f".{out_path.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)  # what a killed run left behind
    staging.mkdir(parents=True)
    return staging


def publish_output(staging: Path, out: str) -> None:
    """Swaps the finished staging folder into place: readers see the old or the new output,
    never a mix."""
    out_path = Path(out)
    old = out_path.with_name(f".{out_path.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out_path.exists():
        os.replace(out_path, old)
    os.replace(staging, out_path)
    shutil.rmtree(old, ignore_errors=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", help="folder with train.txt, dev.txt, test.txt (CoNLL)")
    parser.add_argument("--raw", action="append", default=[], help="glob of raw text files (one document per line)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--vocab-from", help="reuse the vocabularies of an earlier preprocess output")
    parser.add_argument("--columns", default=",".join(conll.CONLL2003_COLUMNS))
    parser.add_argument("--input-scheme", default="auto", choices=("auto",) + conll.SCHEMES)
    parser.add_argument("--tag-scheme", default="IOBES", choices=conll.SCHEMES)
    parser.add_argument("--min-count", type=int, default=1)
    parser.add_argument("--glove", default=glove.EMBEDDED, help="GloVe text file (.txt/.txt.gz); default: embedded 6B 50d")
    parser.add_argument("--num-shards", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=1000)
    parser.add_argument("--lenient", action="store_true", help="skip malformed sentences/lines (counted, logged)")
    parser.add_argument("--wikitext", action="store_true", help="raw text uses wikitext's @-@ markers")
    parser.add_argument("--lowercase", type=int, default=1, choices=(0, 1))
    parser.add_argument("--zero-digits", type=int, default=0, choices=(0, 1))
    parser.add_argument("--bert-handle", help="local BERT encoder folder (`cli.py convert-bert` output): "
                                              "also store each token's wordpiece ids")
    parser.add_argument("--gazetteer", action="append", default=[],
                        help="'train' (entities of the training split) or a file of TYPE<TAB>name lines; repeatable")
    parser.add_argument("--overwrite", action="store_true")
    return parser.parse_known_args(argv)


def run(argv=None) -> dict:
    """Parses options, builds and runs the pipeline; returns the published stats."""
    args, beam_args = parse_args(argv)
    inputs = {}
    if args.data_dir:
        inputs = {split: str(Path(args.data_dir) / f"{split}.txt") for split in SPLITS
                  if (Path(args.data_dir) / f"{split}.txt").exists()}
        if "train" not in inputs and not args.vocab_from:
            raise FileNotFoundError(f"{args.data_dir}/train.txt is needed to build vocabularies")
    if not inputs and not args.raw:
        raise ValueError("nothing to preprocess: give --data-dir and/or --raw")
    if not inputs.get("train") and not args.vocab_from:
        raise ValueError("raw text alone needs --vocab-from DIR (an earlier preprocess output)")
    options = PreprocessOptions(
        columns=tuple(args.columns.split(",")), input_scheme=args.input_scheme, tag_scheme=args.tag_scheme,
        min_count=args.min_count, glove=args.glove, num_shards=args.num_shards, max_tokens=args.max_tokens,
        lenient=args.lenient, wikitext=args.wikitext,
        features=features.FeatureConfig(lowercase=bool(args.lowercase), zero_digits=bool(args.zero_digits)),
        bert_handle=bert_encoder_dir(args.bert_handle),
        gazetteer=tuple(g if g == "train" else os.path.abspath(g) for g in args.gazetteer))
    options = resolve_input_scheme(inputs, options)
    staging = prepare_output(args.out, args.overwrite)
    try:
        if args.vocab_from:
            shutil.copytree(Path(args.vocab_from) / "vocab", staging / "vocab")
        p = beam.Pipeline(options=PipelineOptions(beam_args))
        build_pipeline(p, inputs, args.raw, str(staging), options, args.vocab_from)
        result = p.run()
        result.wait_until_finish()
        add_skip_counts(staging / "stats.json", result, inputs, bool(args.raw))
        config = {**dataclasses.asdict(options), "inputs": inputs, "raw": args.raw, "vocab_from": args.vocab_from}
        if options.bert_handle is not None:
            from etagger.layers.contextual import vocab_sha256

            config["bert_vocab_sha256"] = vocab_sha256(options.bert_handle)
        with conll.atomic_write(staging / "preprocess.json") as f:
            json.dump(config, f, indent=2, sort_keys=True)
        publish_output(staging, args.out)
    except BaseException:
        # A failed run leaves nothing behind: no output folder, no half-written staging.
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return json.loads((Path(args.out) / "stats.json").read_text())


def bert_encoder_dir(handle: str | None) -> str | None:
    """The absolute encoder folder of a --bert-handle (checked to exist), or None."""
    if handle is None:
        return None
    from etagger.layers.contextual import resolve_handle

    return str(resolve_handle(handle))


def add_skip_counts(stats_path: Path, result, inputs: dict[str, str], raw: bool) -> None:
    """Adds what a lenient read skipped (per split: skipped_sentences, skipped_lines; raw:
    skipped_lines) from the pipeline's counters to stats.json, so no loss goes unreported."""
    counters: collections.Counter = collections.Counter()
    for row in result.metrics().query(MetricsFilter().with_namespace("preprocess"))["counters"]:
        counters[row.key.metric.name] += row.committed if row.committed is not None else row.attempted
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    for split, path in inputs.items():
        entry = stats.setdefault(split, {})
        entry["skipped_sentences"] = counters[f"skipped_sentences:{path}"]
        entry["skipped_lines"] = counters[f"skipped_lines:{path}"]
    if raw:
        stats.setdefault(RAW_SPLIT, {})["skipped_lines"] = counters["bad_lines"]
    with conll.atomic_write(stats_path) as f:
        json.dump(stats, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(json.dumps(run(), indent=2, sort_keys=True))
