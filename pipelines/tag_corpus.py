"""Beam pipeline: tag corpora with an exported SavedModel through RunInference.

    etagger tag-corpus --model S --input GLOB --output DIR [--format conll|jsonl|parquet] \
        [--runner DirectRunner] ...    (every option: etagger tag-corpus --help)

Input files (local, ``gs://``, ``s3://`` ...) are CoNLL column files (gold tags optional)
or raw text, one document or sentence per line (sentence split and tokenized as in
preprocessing). Each file is cut into byte ranges that workers read in parallel
(``pipelines.io``). Each range's sentences (for a model trained with document context:
packs of consecutive sentences) are tagged by the model's own graph, token strings in,
tags out, in length-sorted calls, and written as one part file per range. Memory holds a
range at a time, however large the corpus.

Outputs, each written under a temporary name and renamed, so it appears whole or not at all:
  DIR/<file name>.conll                       conlleval input, in input order (the parts joined)
  DIR/<file name>-SSSSS-of-NNNNN.jsonl|parquet one shard per input range, in input order
  DIR/timing.json                             model load time, per-call and per-sentence
                                              latency, throughput, counts and skipped records,
                                              per worker too; complete on every runner
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, cast

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from etagger import clioptions, conll, fsutil, outputs, packing, ranges, tagschemes
from etagger.predictor import Predictor, Tagged, document_context, read_meta
from pipelines import io
from pipelines.options import TagOptions

log = logging.getLogger(__name__)
NAMESPACE = "tag_corpus"
WORK_DIR = ".etagger-work"  # parts and receipts of a run in progress, under the output folder


# ----------------------------------------------------------------------------- inference


class RangeTags(NamedTuple):
    """The model's output for one range: per sentence its predictions, per model call its
    (seconds, sentences, tokens), the wall seconds of all its calls (less than their sum when
    calls overlap), and how long the worker took to load the model (in the range's receipt,
    since the Dask runner has no metrics to carry RunInference's own)."""

    per_sentence: tuple[Tagged, ...]
    calls: tuple[tuple[float, int, int], ...]
    seconds: float
    model_load_seconds: float


@functools.lru_cache(maxsize=4)
def _predictor(path: str, with_confidence: bool, fingerprint: bytes) -> Predictor:
    # One model per worker process, whatever the runner does with DoFn instances: the Dask
    # runner sets a DoFn up again for every partition. The SavedModel's fingerprint is in the
    # key, so a long-lived worker loads a model exported anew to the same path.
    return Predictor(path, with_confidence)


class TaggerModelHandler(ModelHandler[io.RangeSentences, PredictionResult, Predictor]):
    """RunInference handler for an etagger SavedModel. An example is one input range's
    sentences; the handler packs them (document context), sorts them by length and calls
    the model on runs of at most ``max_batch_sentences`` packs and ``max_batch_tokens``
    tokens, so that padding wastes little. ``inflight_calls`` calls run at once, on threads:
    TensorFlow releases the GIL while a call runs, so one call's feature and decoding ops
    and another's Python fill the cores that a single call leaves idle outside its LSTM."""

    def __init__(
        self,
        model_path: str,
        with_confidence: bool,
        max_batch_sentences: int = 64,
        max_batch_tokens: int = 4096,
        document_context: int = 0,
        fs_options: dict | None = None,
        inflight_calls: int = 2,
    ):
        super().__init__()
        if inflight_calls < 1:
            raise ValueError(f"inflight_calls must be >= 1, got {inflight_calls}")
        self.inflight_calls = inflight_calls
        self.model_path = model_path
        self.fs_options = fs_options or {}
        self.with_confidence = with_confidence
        self.max_batch_sentences = max_batch_sentences
        self.max_batch_tokens = max_batch_tokens
        self.document_context = document_context

    def load_model(self) -> Predictor:
        io.use_filesystem_options(self.fs_options)  # the model may be remote (s3://, gs://)
        fingerprint_path = fsutil.join(self.model_path, "fingerprint.pb")  # written by TF >= 2.13
        fingerprint = (
            fsutil.read_bytes(fingerprint_path) if fsutil.exists(fingerprint_path) else b""
        )
        return _predictor(self.model_path, self.with_confidence, fingerprint)

    def run_inference(
        self, batch: Sequence[io.RangeSentences], model: Predictor, inference_args=None
    ) -> Iterable[PredictionResult]:
        return [PredictionResult(example, self._tag(example.sentences, model)) for example in batch]

    def _tag(self, sentences: Sequence[conll.Sentence], model: Predictor) -> RangeTags:
        packs = packing.pack_sentences(sentences, self.document_context)
        lengths = [_tokens(pack) for pack in packs]
        chunks = list(
            packing.length_sorted_calls(lengths, self.max_batch_sentences, self.max_batch_tokens)
        )

        def call(chunk: list[int]) -> tuple[list[list[Tagged]], tuple[float, int, int]]:
            start = time.perf_counter()
            tagged = model.tag_packs([[s.columns for s in packs[i]] for i in chunk])
            seconds = time.perf_counter() - start
            size = sum(len(packs[i]) for i in chunk), sum(lengths[i] for i in chunk)
            return tagged, (seconds, *size)

        start = time.perf_counter()
        if self.inflight_calls == 1:
            done = [call(chunk) for chunk in chunks]
        else:
            with ThreadPoolExecutor(self.inflight_calls, thread_name_prefix="etagger-call") as pool:
                done = list(pool.map(call, chunks))
        seconds = time.perf_counter() - start
        results: list[list[Tagged]] = [[] for _ in packs]
        for chunk, (tagged, _) in zip(chunks, done):
            for i, parts in zip(chunk, tagged):
                results[i] = parts
        return RangeTags(
            tuple(part for parts in results for part in parts),
            tuple(figures for _, figures in done),
            seconds,
            model.load_seconds,
        )

    def get_num_bytes(self, batch: Sequence[io.RangeSentences]) -> int:
        return sum(len(w) for example in batch for s in example.sentences for w in s.words)


def _tokens(pack: Sequence[conll.Sentence]) -> int:
    return sum(len(s) for s in pack)


class TagRanges(beam.PTransform):
    """RangeSentences -> PredictionResult(RangeSentences, RangeTags), through RunInference,
    one range per model call (``io.InferPerRange``)."""

    def __init__(self, options: TagOptions, fs_options: dict | None = None):
        super().__init__()
        self.options, self.fs_options = options, fs_options

    def expand(self, read):
        handler = TaggerModelHandler(
            self.options.model,
            with_confidence=self.options.format != "conll",
            max_batch_sentences=self.options.batch_sentences,
            max_batch_tokens=self.options.batch_tokens,
            document_context=self.options.document_context,
            fs_options=self.fs_options,
            inflight_calls=self.options.inflight_calls,
        )
        return read | "Tag" >> io.InferPerRange(handler, io.RangeSentences, NAMESPACE)


# ----------------------------------------------------------------------------- writing


def render(
    sentences: Sequence[conll.Sentence], tagged: Sequence[Tagged], fmt: str, scheme: str = "IOB2"
) -> bytes:
    """The output of tagged sentences (in input order). CoNLL output of gold-tagged input
    spells the predictions in ``scheme``, as the gold tags are."""
    if fmt == "conll":
        return "".join(
            outputs.conll_text(
                list(s.columns.values()),
                tagschemes.convert_tags(t.tags, "IOB2", scheme) if "tag" in s.columns else t.tags,
            )
            for s, t in zip(sentences, tagged)
        ).encode("utf-8")
    records = [
        outputs.record(s, t.tags, t.token_confidence, t.entity_confidence)
        for s, t in zip(sentences, tagged)
    ]
    return (
        outputs.jsonl_text(records).encode("utf-8")
        if fmt == "jsonl"
        else outputs.parquet_bytes(records)
    )


class _WritePart(io.FileSystemsDoFn):
    """PredictionResult -> the range's part file WORK/parts/<range>.<format>, then its
    receipt WORK/receipts/<range>.json (counts and model-call times); yields the range's
    name."""

    def __init__(self, work_dir: str, fmt: str, scheme: str, fs_options: dict):
        super().__init__(fs_options)
        self.work_dir, self.fmt, self.scheme = work_dir, fmt, scheme

    def process(self, result: PredictionResult):
        read = cast(io.RangeSentences, result.example)
        tags = cast(RangeTags, result.inference)
        name = read.range.name
        fsutil.write_bytes(
            fsutil.join(self.work_dir, "parts", f"{name}.{self.fmt}"),
            render(read.sentences, tags.per_sentence, self.fmt, self.scheme),
        )
        tokens = sum(len(s) for s in read.sentences)
        receipt = {
            "sentences": len(read.sentences),
            "tokens": tokens,
            "entities": sum(t.startswith("B-") for out in tags.per_sentence for t in out.tags),
            "read": read.counts._asdict(),
            "calls": tags.calls,
            "model_seconds": tags.seconds,
            "model_load_seconds": tags.model_load_seconds,
            "worker": io.worker_name(),
        }
        io.write_receipt(fsutil.join(self.work_dir, "receipts"), name, receipt)
        yield name


@beam.ptransform_fn
def TagAndWrite(
    pbegin: beam.pvalue.PBegin,
    planned: Sequence[ranges.FileRange],
    options: TagOptions,
    work_dir: str,
    fs_options: dict | None = None,
) -> beam.PCollection:
    """One straight chain: ranges -> read -> tag -> part files and receipts; yields the names
    of the ranges done."""
    fs_options = fs_options or {}
    return (
        pbegin
        | "Read" >> io.ReadRanges(planned, options, fs_options)
        | "Tag" >> TagRanges(options, fs_options)
        | "WriteParts"
        >> beam.ParDo(_WritePart(work_dir, options.format, options.gold_scheme, fs_options))
    )


def output_names(path: str, fmt: str, count: int) -> list[str]:
    """The output file names of an input file cut into ``count`` ranges."""
    name = fsutil.basename(path)
    if fmt == "conll":
        return [f"{name}.conll"]
    return [f"{name}-{i:05d}-of-{count:05d}.{fmt}" for i in range(count)]


def publish(planned: Sequence[ranges.FileRange], output: str, work_dir: str, fmt: str) -> None:
    """Moves the parts into their outputs: CoNLL parts joined into one file per input (a
    block at a time), JSONL/Parquet parts renamed to shards. Shards of an earlier run of
    the same input with another shard count are removed."""
    by_file: dict[str, list[ranges.FileRange]] = {}
    for r in planned:
        by_file.setdefault(r.path, []).append(r)
    for path, parts in by_file.items():
        sources = [
            fsutil.join(work_dir, "parts", f"{r.name}.{fmt}")
            for r in sorted(parts, key=lambda r: r.number)
        ]
        names = output_names(path, fmt, len(parts))
        if fmt == "conll":
            fsutil.concatenate(sources, fsutil.join(output, names[0]))
            continue
        targets = [fsutil.join(output, n) for n in names]
        fsutil.move(sources, targets)
        stale = fsutil.match(
            fsutil.join(output, f"{fsutil.basename(path)}-?????-of-?????.{fmt}"), allow_empty=True
        )
        fsutil.delete(m.path for m in stale if m.path not in targets)


# ----------------------------------------------------------------------------- timing


def _percentiles(values: np.ndarray, scale: float = 1000.0) -> dict:
    if not len(values):
        return {}
    return {
        "mean_ms": round(float(values.mean() * scale), 3),
        **{f"p{q}_ms": round(float(np.percentile(values, q) * scale), 3) for q in (50, 95, 99)},
    }


def latency_summary(calls: Sequence[Sequence[float]]) -> dict:
    """Per-call latency; per-sentence latency = its call's time / the call's sentences."""
    seconds = np.array([c[0] for c in calls], dtype=float)
    sizes = np.array([c[1] for c in calls], dtype=int)
    return {
        "batches": len(calls),
        "mean_batch_sentences": round(float(sizes.mean()), 2) if len(sizes) else 0,
        "batch_latency": _percentiles(seconds),
        "sentence_latency": _percentiles(np.repeat(seconds / np.maximum(sizes, 1), sizes)),
    }


BAD_COUNTERS = (
    "bad_lines",
    "skipped_sentences",
    "skipped_lines",
    "empty_lines",
    "control_char_lines",
    "max_length_sentences",
    "empty_files",
)


def summarise(receipts: dict[str, dict], planned: Sequence[ranges.FileRange]) -> dict:
    """The run's figures from the ranges' receipts."""
    totals: dict = {}
    workers: dict[str, dict] = {}
    calls: list = []
    sentences_per_file: dict[str, int] = {}
    for r in planned:
        receipt = receipts[r.name]
        io.add_counts(totals, {k: receipt[k] for k in ("sentences", "tokens", "entities", "read")})
        io.add_counts(
            workers.setdefault(receipt["worker"], {}),
            {"ranges": 1, "sentences": receipt["sentences"], "tokens": receipt["tokens"]},
        )
        calls += receipt["calls"]
        sentences_per_file[r.path] = sentences_per_file.get(r.path, 0) + receipt["sentences"]
    bad = dict(
        totals.get("read", {}), empty_files=sum(1 for n in sentences_per_file.values() if not n)
    )
    loads = [receipt["model_load_seconds"] for receipt in receipts.values()]
    return {
        "sentences": totals.get("sentences", 0),
        "tokens": totals.get("tokens", 0),
        "entities": totals.get("entities", 0),
        "model_load_ms": round(max(loads) * 1000, 1) if loads else None,
        "ranges": len(planned),
        "workers": workers,
        # Wall seconds in model calls, summed over ranges: calls of a range may overlap.
        "inference_seconds": round(sum(receipts[r.name]["model_seconds"] for r in planned), 3),
        **latency_summary(calls),
        "bad_records": {k: bad[k] for k in BAD_COUNTERS if bad.get(k)},
    }


def _rates(sentences_per_second: float, tokens_per_second: float) -> str:
    # Three significant figures below 100/s, so a tiny input's 0.4 sentences/s does not print as 0.
    return ", ".join(
        f"{r:,.0f}" if r >= 100 else f"{r:.3g}" for r in (sentences_per_second, tokens_per_second)
    )


def format_table(timing: dict) -> str:
    """The timing figures as an aligned two-column table."""
    s, b = timing["sentence_latency"], timing["batch_latency"]
    rows = [
        ("input files (ranges)", f"{timing['files']} ({timing['ranges']})"),
        ("sentences", f"{timing['sentences']:,}"),
        ("tokens", f"{timing['tokens']:,}"),
        ("entities", f"{timing['entities']:,}"),
        (
            "model load",
            f"{timing['model_load_ms']} ms" if timing["model_load_ms"] is not None else "n/a",
        ),
        ("workers", f"{len(timing['workers'])}"),
        ("batches (mean sentences)", f"{timing['batches']} ({timing['mean_batch_sentences']})"),
        (
            "batch latency mean/p50/p95/p99",
            "/".join(f"{b.get(k, 0):.2f}" for k in ("mean_ms", "p50_ms", "p95_ms", "p99_ms"))
            + " ms",
        ),
        (
            "sentence latency mean/p50/p95/p99",
            "/".join(f"{s.get(k, 0):.3f}" for k in ("mean_ms", "p50_ms", "p95_ms", "p99_ms"))
            + " ms",
        ),
        (
            "inference sentences/s, tokens/s",
            _rates(timing["inference_sentences_per_second"], timing["inference_tokens_per_second"]),
        ),
        ("wall time", f"{timing['wall_seconds']:.2f} s"),
        (
            "end-to-end sentences/s, tokens/s",
            _rates(timing["sentences_per_second"], timing["tokens_per_second"]),
        ),
        (
            "skipped or bad records",
            ", ".join(f"{k} {v}" for k, v in timing["bad_records"].items()) or "none",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


# ----------------------------------------------------------------------------- driver


def sniff_format(path: str, columns: Sequence[str]) -> str:
    """ "conll" when the file's first non-blank lines have one field per column and end in
    a tag (or are a single token: a one-column CoNLL file needs --input-format conll);
    "raw" otherwise."""
    seen = 0
    with fsutil.open_read(path, compressed=True) as f:
        for raw in f:
            fields = raw.decode("utf-8", errors="replace").split()
            if not fields:
                continue
            if len(fields) != len(columns) or (
                "tag" in columns and not tagschemes.is_tag(fields[columns.index("tag")])
            ):
                return "raw"
            seen += 1
            if seen == 20:
                break
    return "conll" if seen else "raw"


def resolve_inputs(
    patterns: Sequence[str], input_format: str, columns: Sequence[str]
) -> dict[str, str]:
    """input path -> "conll" | "raw", in path order; errors for a pattern without a match
    and for two files of one name (they would write the same outputs)."""
    paths = [m.path for m in fsutil.match(patterns)]
    names: dict[str, str] = {}
    for path in paths:
        name = fsutil.basename(path)
        if name in names:
            raise ValueError(f"{names[name]} and {path} would write the same output file")
        names[name] = path
    return {p: sniff_format(p, columns) if input_format == "auto" else input_format for p in paths}


def plan(paths: dict[str, str], options: TagOptions) -> list[ranges.FileRange]:
    """The input ranges. With document context a CoNLL file is one range, since a pack may
    run on across any byte boundary (raw lines are documents: they can be cut anywhere)."""
    whole = (
        {p for p, kind in paths.items() if kind == "conll"} if options.document_context else set()
    )
    return io.plan_ranges(paths, options.range_bytes, whole=whole)


def tag_corpus(options: TagOptions, beam_args: Sequence[str] = ()) -> dict:
    """Runs the pipeline and publishes the outputs; returns (and writes) the timing figures."""
    beam_options = io.pipeline_options(beam_args)
    meta = read_meta(options.model)
    options = dataclasses.replace(
        options, gold_scheme=meta["input_scheme"], document_context=document_context(meta)
    )
    paths = resolve_inputs(options.input, options.input_format, options.columns)
    output = options.output
    if fsutil.is_local(output) and os.path.exists(output) and not os.path.isdir(output):
        raise NotADirectoryError(f"{output}: the output folder is a file")
    work_dir = fsutil.join(output, WORK_DIR)
    fsutil.delete_tree(work_dir)  # what a killed run left; outputs are only ever renamed into place
    fsutil.delete_temporaries(output)
    start = time.perf_counter()
    planned = io.take_census(plan(paths, options), options, beam_options, work_dir)
    census = time.perf_counter()
    fs_options = io.filesystem_options(beam_options)
    with io.Progress("tag-corpus", planned, fsutil.join(work_dir, "receipts"), quiet=options.quiet):
        io.run(
            lambda p: p | "TagCorpus" >> TagAndWrite(planned, options, work_dir, fs_options),
            beam_options,
        )
    tagged = time.perf_counter()
    receipts = io.read_receipts(fsutil.join(work_dir, "receipts"), [r.name for r in planned])
    publish(planned, output, work_dir, options.format)
    fsutil.delete_tree(work_dir)
    wall = time.perf_counter() - start
    # Where the wall time went: the census pass, the tagging pipeline, the driver's publishing.
    phases = {"census": census - start, "tag": tagged - census, "publish": wall - (tagged - start)}
    figures = summarise(receipts, planned)
    sentences, tokens = figures["sentences"], figures["tokens"]
    busy = figures["inference_seconds"] or float("nan")
    timing = {
        "model": options.model,
        "inputs": paths,
        "files": len(paths),
        "format": options.format,
        "beam_args": list(beam_args),
        **figures,
        "inference_sentences_per_second": round(sentences / busy, 1) if sentences else 0.0,
        "inference_tokens_per_second": round(tokens / busy, 1) if tokens else 0.0,
        "wall_seconds": round(wall, 3),
        "phase_seconds": {k: round(v, 3) for k, v in phases.items()},
        "sentences_per_second": round(sentences / wall, 1),
        "tokens_per_second": round(tokens / wall, 1),
    }
    fsutil.write_text(
        fsutil.join(output, "timing.json"), json.dumps(timing, indent=2, sort_keys=True)
    )
    return timing


def run(argv: Sequence[str]) -> dict:
    """``tag_corpus`` with the options of a command line (``etagger tag-corpus --help``)."""
    [options], beam_args = clioptions.parse(argv, TagOptions, prog="tag-corpus")
    return tag_corpus(options, beam_args)
