"""Beam pipeline: tag corpora with an exported SavedModel through RunInference.

    python -m pipelines.tag_corpus --model S --input GLOB --output DIR \
        [--format conll|jsonl|parquet] [--input-format auto|conll|raw] [--runner DirectRunner] ...

Input files are CoNLL column files (gold tags optional) or raw text, one document or
sentence per line (sentence split and tokenized as in preprocessing). Sentences (for a
model trained with document context: packs of consecutive sentences, ``PackDocuments``)
are batched by length (BatchElements' length buckets), tagged by the model's own graph
(token strings in, tags out) and written, per input file, to ``DIR/<file name>.<format>``
in input order, atomically. ``DIR/timing.json`` holds model load time, per-batch and per-sentence
latency, throughput and the pipeline's counters (sentences, tokens, skipped records).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import ModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from etagger import conll, outputs
from etagger.predictor import Predictor, document_context, read_meta
from pipelines.io import ReadConll, ReadRawText

log = logging.getLogger(__name__)
NAMESPACE = "tag_corpus"
FORMATS = ("conll", "jsonl", "parquet")
_TAG = re.compile(r"^(O|[BIES]-\S+)$")


@dataclasses.dataclass(frozen=True)
class TagOptions:
    """What to tag and how to write it."""

    model: str
    format: str = "conll"
    columns: tuple[str, ...] = conll.CONLL2003_COLUMNS  # CoNLL input columns
    lenient: bool = False  # skip (and count) malformed records instead of failing
    max_tokens: int = 1000  # raw text: longer sentences are cut (CoNLL input: no limit)
    wikitext: bool = False  # raw text in wikitext-2/-103 style
    max_batch_sentences: int = 64  # per model call (packs of sentences, with document context)
    max_batch_tokens: int = 4096  # per RunInference batch (split into length-sorted model calls)
    output_scheme: str = "IOB2"  # scheme of predicted tags in CoNLL output of gold-tagged input
    document_context: int = 0  # the model's: tokens of neighbouring sentences read together

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {self.format!r}")


# ----------------------------------------------------------------------------- inference

class TaggerModelHandler(ModelHandler[Sequence[conll.Sentence], list, Predictor]):
    """RunInference handler for an etagger SavedModel. An element is a pack of consecutive
    sentences the model reads as one sequence (one sentence without document context); its
    result is one dict per sentence with the sentence, its IOB2 ``tags`` (and CRF
    confidences when ``with_confidence``), and the time and size of the model call."""

    def __init__(self, model_path: str, with_confidence: bool, max_batch_sentences: int = 64,
                 max_batch_tokens: int = 4096):
        self.model_path = model_path
        self.with_confidence = with_confidence
        self.max_batch_sentences = max_batch_sentences
        # BatchElements sizes batches in tokens; run_inference sorts each batch by length
        # and calls the model on runs of similar length, so padding wastes little.
        # (BatchElements' own length buckets need its stateful path, which DirectRunner
        # runs on its old bundle-based runner: no --direct_num_workers, counters lost.)
        self._batching_kwargs = dict(min_batch_size=min(512, max_batch_tokens), max_batch_size=max_batch_tokens,
                                     element_size_fn=_tokens)

    def load_model(self) -> Predictor:
        return Predictor(self.model_path, self.with_confidence)

    def run_inference(self, batch: Sequence[Sequence[conll.Sentence]], model: Predictor,
                      inference_args=None) -> list[list[dict]]:
        if not getattr(model, "load_reported", False):
            # Metrics updated in DoFn.setup, where loading happens, are dropped: report on first use.
            Metrics.distribution(NAMESPACE, "model_load_ms").update(int(model.load_seconds * 1000))
            model.load_reported = True
        order = sorted(range(len(batch)), key=lambda i: _tokens(batch[i]))
        results: list[list[dict]] = [[]] * len(batch)
        for first in range(0, len(order), self.max_batch_sentences):
            chunk = order[first:first + self.max_batch_sentences]
            start = time.perf_counter()
            tagged = model.tag_packs([[s.columns for s in batch[i]] for i in chunk])
            seconds = time.perf_counter() - start
            tokens = sum(_tokens(batch[i]) for i in chunk)
            sentences = sum(len(batch[i]) for i in chunk)
            for k, (i, parts) in enumerate(zip(chunk, tagged)):
                results[i] = [{"sentence": sentence, **part, "batch_seconds": seconds if k == j == 0 else None,
                               "batch_size": sentences, "batch_tokens": tokens}
                              for j, (sentence, part) in enumerate(zip(batch[i], parts))]
        return results

    def get_num_bytes(self, batch: Sequence[Sequence[conll.Sentence]]) -> int:
        return sum(len(w) for pack in batch for s in pack for w in s.words)

    def share_model_across_processes(self) -> bool:
        return False


def _tokens(pack: Sequence[conll.Sentence]) -> int:
    return sum(len(s) for s in pack)


class PackDocuments(beam.PTransform):
    """conll.Sentence -> packs (tuples) of consecutive sentences of one document, at most
    ``max_tokens`` tokens each (``conll.pack_documents``), for a model trained with
    document context; with ``max_tokens`` 0, every sentence is a pack of its own.

    Sentences are grouped by file and block of ``conll.PACK_BLOCK`` sentence indices, so no
    worker has to hold a whole large file; packs are cut where ``conll.starts_pack`` says,
    as in training and evaluation (CoNLL: at ``-DOCSTART-``; raw text: at each line).
    """

    def __init__(self, max_tokens: int):
        super().__init__()
        self.max_tokens = max_tokens

    def expand(self, sentences):
        if not self.max_tokens:
            return sentences | beam.Map(lambda s: (s,))
        max_tokens = self.max_tokens

        def pack(block):
            in_order = sorted(block, key=lambda s: s.index)
            for found in conll.pack_documents(in_order, max_tokens, len, lambda s: conll.starts_pack(s.index, s.leading)):
                yield tuple(found)

        return (sentences
                | beam.Map(lambda s: ((s.source, s.index // conll.PACK_BLOCK), s))
                | beam.GroupByKey()
                | beam.FlatMapTuple(lambda _, block: pack(block)))


class _CountAndReport(beam.DoFn):
    """Counts tagged sentences and tokens; every 10 s a worker prints its progress."""

    def __init__(self):
        self.sentences = Metrics.counter(NAMESPACE, "sentences")
        self.tokens = Metrics.counter(NAMESPACE, "tokens")
        self.entities = Metrics.counter(NAMESPACE, "entities")

    def setup(self):
        self.started = self.last = time.monotonic()
        self.done_sentences = self.done_tokens = 0

    def process(self, tagged: dict):
        n = len(tagged["sentence"])
        self.sentences.inc()
        self.tokens.inc(n)
        self.entities.inc(sum(t.startswith("B-") for t in tagged["tags"]))
        self.done_sentences += 1
        self.done_tokens += n
        now = time.monotonic()
        if now - self.last >= 10:
            self.last = now
            print(f"tag-corpus [pid {os.getpid()}]: {self.done_sentences:,} sentences, {self.done_tokens:,} tokens,"
                  f" {self.done_tokens / (now - self.started):,.0f} tokens/s", file=sys.stderr, flush=True)
        yield tagged


class TagSentences(beam.PTransform):
    """conll.Sentence -> tagged dicts (RunInference over length-bucketed batches of packs)."""

    def __init__(self, options: TagOptions):
        super().__init__()
        self.options = options

    def expand(self, sentences):
        handler = TaggerModelHandler(self.options.model, with_confidence=self.options.format != "conll",
                                     max_batch_sentences=self.options.max_batch_sentences,
                                     max_batch_tokens=self.options.max_batch_tokens)
        return (sentences
                | PackDocuments(self.options.document_context)
                | RunInference(handler, metrics_namespace=NAMESPACE)
                | beam.FlatMap(lambda tagged_pack: tagged_pack)
                | beam.ParDo(_CountAndReport()))


# ----------------------------------------------------------------------------- reading

def sniff_format(path: str, columns: Sequence[str]) -> str:
    """"conll" when the file's first non-blank lines have one field per column and end in
    a tag (or are a single token: a one-column CoNLL file needs --input-format conll);
    "raw" otherwise."""
    seen = 0
    with open(path, "rb") as f:
        for raw in f:
            fields = raw.decode("utf-8", errors="replace").split()
            if not fields:
                continue
            if len(fields) != len(columns) or ("tag" in columns and not _TAG.match(fields[-1])):
                return "raw"
            seen += 1
            if seen == 20:
                break
    return "conll" if seen else "raw"


class ReadInputs(beam.PTransform):
    """Input files -> conll.Sentence, each file read as CoNLL or raw text."""

    def __init__(self, paths: dict[str, str], options: TagOptions):
        super().__init__()
        self.paths, self.options = paths, options  # path -> "conll" | "raw"

    def expand(self, pbegin):
        conll_files = sorted(p for p, kind in self.paths.items() if kind == "conll")
        raw_files = sorted(p for p, kind in self.paths.items() if kind == "raw")
        # CoNLL input is tagged whole, however long a sentence is: no token may be lost.
        conll_options = dataclasses.replace(self.options, max_tokens=0)
        parts = []
        if conll_files:
            parts.append(pbegin | "Conll" >> ReadConll(conll_files, conll_options, NAMESPACE, allow_empty=True))
        if raw_files:
            parts.append(pbegin | "Raw" >> ReadRawText(raw_files, self.options, NAMESPACE))
        return tuple(parts) | beam.Flatten()


# ----------------------------------------------------------------------------- writing

def output_name(path: str, fmt: str) -> str:
    return f"{Path(path).name}.{fmt}"


def render(tagged: Sequence[dict], fmt: str, scheme: str = "IOB2") -> bytes:
    """The output file of one input file's tagged sentences (in input order). CoNLL output
    of gold-tagged input spells the predictions in ``scheme``, as the gold tags are."""
    if fmt == "conll":
        text = "".join(
            outputs.conll_text(list(t["sentence"].columns.values()),
                               conll.convert_tags(t["tags"], "IOB2", scheme) if "tag" in t["sentence"].columns
                               else t["tags"])
            for t in tagged)
        return text.encode("utf-8")
    records = [outputs.record(t["sentence"], t["tags"], t.get("token_confidence"), t.get("entity_confidence"))
               for t in tagged]
    return outputs.jsonl_text(records).encode("utf-8") if fmt == "jsonl" else outputs.parquet_bytes(records)


class WriteTagged(beam.PTransform):
    """Tagged dicts -> one file per input file, ``DIR/<name>.<format>``, sentences in input
    order, each written to a temporary name and renamed, so it appears whole or not at all.
    Input files without a sentence still get their (empty) output file."""

    def __init__(self, paths: Sequence[str], output: str, fmt: str, scheme: str = "IOB2"):
        super().__init__()
        self.paths, self.output, self.fmt, self.scheme = list(paths), output, fmt, scheme

    def expand(self, tagged):
        output, fmt, scheme = self.output, self.fmt, self.scheme

        def write(name, items):
            rows = sorted((t for t in items if t is not None), key=lambda t: t["sentence"].index)
            path = FileSystems.join(output, name)
            tmp = FileSystems.join(output, f".{name}.{uuid.uuid4().hex}.tmp")
            with FileSystems.create(tmp) as f:
                f.write(render(rows, fmt, scheme))
            FileSystems.rename([tmp], [path])
            yield name

        by_file = tagged | beam.Map(lambda t: (output_name(t["sentence"].source, fmt), t))
        every_file = (tagged.pipeline | "Files" >> beam.Create([output_name(p, fmt) for p in self.paths])
                      | beam.Map(lambda name: (name, None)))
        return ((by_file, every_file) | beam.Flatten() | beam.GroupByKey() | beam.FlatMapTuple(write))


# ----------------------------------------------------------------------------- timing

class LatencyStats(beam.PTransform):
    """Tagged dicts -> one dict of batch and (amortised) per-sentence latency figures."""

    def expand(self, tagged):
        batches = (tagged
                   | beam.Filter(lambda t: t["batch_seconds"] is not None)
                   | beam.Map(lambda t: (t["batch_seconds"], t["batch_size"], t["batch_tokens"])))
        return batches | beam.combiners.ToList() | beam.Map(latency_summary)


def _percentiles(values: np.ndarray, scale: float = 1000.0) -> dict:
    if not len(values):
        return {}
    return {"mean_ms": round(float(values.mean() * scale), 3),
            **{f"p{q}_ms": round(float(np.percentile(values, q) * scale), 3) for q in (50, 95, 99)}}


def latency_summary(batches: list[tuple[float, int, int]]) -> dict:
    """Per-batch latency; per-sentence latency = its batch's time / the batch's sentences."""
    seconds = np.array([b[0] for b in batches], dtype=float)
    sizes = np.array([b[1] for b in batches], dtype=int)
    return {"batches": len(batches), "mean_batch_sentences": round(float(sizes.mean()), 2) if len(sizes) else 0,
            "inference_seconds": round(float(seconds.sum()), 3),
            "batch_latency": _percentiles(seconds),
            "sentence_latency": _percentiles(np.repeat(seconds / np.maximum(sizes, 1), sizes))}


# ----------------------------------------------------------------------------- driver

def build_pipeline(p: beam.Pipeline, paths: dict[str, str], output: str, options: TagOptions, latency_path: str):
    sentences = p | ReadInputs(paths, options)
    tagged = sentences | TagSentences(options)
    tagged | WriteTagged(sorted(paths), output, options.format, options.output_scheme)
    (tagged | LatencyStats()
     | beam.Map(lambda stats: Path(latency_path).write_text(json.dumps(stats))))


def resolve_inputs(patterns: Sequence[str], input_format: str, columns: Sequence[str]) -> dict[str, str]:
    """input path -> "conll" | "raw"; errors for no match and for two files of one name."""
    import glob

    paths = sorted({os.path.normpath(f) for pattern in patterns for f in glob.glob(pattern)})
    if not paths:
        raise FileNotFoundError(f"no files match {list(patterns)}")
    names: dict[str, str] = {}
    for path in paths:
        if Path(path).name in names:
            raise ValueError(f"{names[Path(path).name]} and {path} would write the same output file")
        names[Path(path).name] = path
    return {p: sniff_format(p, columns) if input_format == "auto" else input_format for p in paths}


def counters(result) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        name = row.key.metric.name.split(":")[0]  # per-file skip counters summed over files
        out[name] = out.get(name, 0) + (row.committed if row.committed is not None else row.attempted)
    return out


def model_load_ms(result) -> float | None:
    rows = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE).with_name("model_load_ms"))
    values = [r.committed or r.attempted for r in rows["distributions"]]
    values = [v for v in values if v is not None and v.count]
    return round(max(v.max for v in values), 1) if values else None


def _rates(sentences_per_second: float, tokens_per_second: float) -> str:
    # Three significant figures below 100/s, so a tiny input's 0.4 sentences/s does not print as 0.
    return ", ".join(f"{r:,.0f}" if r >= 100 else f"{r:.3g}" for r in (sentences_per_second, tokens_per_second))


def format_table(timing: dict) -> str:
    """The timing figures as an aligned two-column table."""
    s, b = timing["sentence_latency"], timing["batch_latency"]
    rows = [
        ("input files", f"{timing['files']}"),
        ("sentences", f"{timing['sentences']:,}"),
        ("tokens", f"{timing['tokens']:,}"),
        ("entities", f"{timing['entities']:,}"),
        ("model load", f"{timing['model_load_ms']} ms" if timing["model_load_ms"] is not None else "n/a"),
        ("batches (mean sentences)", f"{timing['batches']} ({timing['mean_batch_sentences']})"),
        ("batch latency mean/p50/p95/p99", "/".join(f"{b.get(k, 0):.2f}" for k in ("mean_ms", "p50_ms", "p95_ms", "p99_ms")) + " ms"),
        ("sentence latency mean/p50/p95/p99", "/".join(f"{s.get(k, 0):.3f}" for k in ("mean_ms", "p50_ms", "p95_ms", "p99_ms")) + " ms"),
        ("inference sentences/s, tokens/s", _rates(timing["inference_sentences_per_second"], timing["inference_tokens_per_second"])),
        ("wall time", f"{timing['wall_seconds']:.2f} s"),
        ("end-to-end sentences/s, tokens/s", _rates(timing["sentences_per_second"], timing["tokens_per_second"])),
        ("skipped or bad records", ", ".join(f"{k} {v}" for k, v in timing["bad_records"].items()) or "none"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


BAD_COUNTERS = ("bad_lines", "skipped_sentences", "skipped_lines", "empty_lines", "control_char_lines",
                "max_length_sentences", "empty_files")


def parse_args(argv=None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="tag-corpus", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="exported SavedModel folder (cli.py export)")
    parser.add_argument("--input", required=True, action="append", help="input glob; may repeat")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--format", default="conll", choices=FORMATS)
    parser.add_argument("--input-format", default="auto", choices=("auto", "conll", "raw"))
    parser.add_argument("--columns", default=",".join(conll.CONLL2003_COLUMNS),
                        help="CoNLL input columns, comma-separated; 'tag' marks the gold column")
    parser.add_argument("--lenient", action="store_true", help="skip and count malformed records")
    parser.add_argument("--wikitext", action="store_true", help="raw text is wikitext-style (@-@ markers)")
    parser.add_argument("--max-tokens", type=int, default=1000, help="raw text: cut longer sentences")
    parser.add_argument("--batch-size", type=int, default=64, help="most sentences per model call")
    parser.add_argument("--batch-tokens", type=int, default=4096, help="most tokens per RunInference batch")
    return parser.parse_known_args(argv)


def run(argv=None) -> dict:
    """Parses options, builds and runs the pipeline; returns (and writes) the timing figures."""
    args, beam_args = parse_args(argv)
    meta = read_meta(args.model)
    options = TagOptions(model=args.model, output_scheme=meta["input_scheme"], format=args.format, columns=tuple(args.columns.split(",")),
                         lenient=args.lenient, max_tokens=args.max_tokens, wikitext=args.wikitext,
                         max_batch_sentences=args.batch_size, max_batch_tokens=args.batch_tokens,
                         document_context=document_context(meta))
    paths = resolve_inputs(args.input, args.input_format, options.columns)
    Path(args.output).mkdir(parents=True, exist_ok=True)
    for stale in [*Path(args.output).glob(".*.tmp"), *Path(args.output).glob(".latency-*.json")]:
        stale.unlink()  # what a killed run left; finished outputs are only ever renamed into place
    latency_path = str(Path(args.output) / f".latency-{uuid.uuid4().hex}.json")
    start = time.perf_counter()
    p = beam.Pipeline(options=PipelineOptions(beam_args))
    build_pipeline(p, paths, args.output, options, latency_path)
    result = p.run()
    result.wait_until_finish()
    wall = time.perf_counter() - start
    counts = counters(result)
    latency = json.loads(Path(latency_path).read_text()) if Path(latency_path).exists() else latency_summary([])
    Path(latency_path).unlink(missing_ok=True)
    sentences, tokens = counts.get("sentences", 0), counts.get("tokens", 0)
    busy = latency["inference_seconds"] or float("nan")
    timing = {
        "model": args.model, "inputs": {p: kind for p, kind in paths.items()}, "files": len(paths),
        "format": args.format, "beam_args": beam_args,
        "sentences": sentences, "tokens": tokens, "entities": counts.get("entities", 0),
        "model_load_ms": model_load_ms(result), **latency,
        "inference_sentences_per_second": sentences / busy if sentences else 0.0,
        "inference_tokens_per_second": tokens / busy if tokens else 0.0,
        "wall_seconds": round(wall, 3),
        "sentences_per_second": round(sentences / wall, 1), "tokens_per_second": round(tokens / wall, 1),
        "bad_records": {k: counts[k] for k in BAD_COUNTERS if counts.get(k)},
    }
    for key in ("inference_sentences_per_second", "inference_tokens_per_second"):
        timing[key] = round(timing[key], 1)
    with conll.atomic_write(Path(args.output) / "timing.json") as f:
        json.dump(timing, f, indent=2, sort_keys=True)
    return timing


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(format_table(run()))
