"""What the pipelines share: reading inputs as byte ranges, the census pass, the part
files and receipts each range leaves, and the runner set-up.

Every pipeline here is one straight chain from ``Create`` to a last step that writes its
results through Beam's filesystems and returns small receipts:

    Create(ranges) | Reshuffle | ReadRanges | ... | write parts and a receipt per range

The driver then checks that every range left its receipt (so a runner that dropped work
is an error, never a short output) and finishes the outputs from the parts. A straight
chain is what Beam 2.77's DaskRunner needs: it computes only the pipeline's last step and
what that step depends on, drops outputs emitted from ``finish_bundle`` and holds a
partition's outputs as lists. Nothing here relies on runner metrics either: counts and
timings travel in the receipts.

``options`` below is a ``pipelines.options.TagOptions`` or ``PreprocessOptions``: what
reading uses of them is ``columns``, ``lenient``, ``max_sentence_tokens`` and ``wikitext``.
"""

from __future__ import annotations

import difflib
import functools
import gc
import json
import logging
import os
import pickle
import socket
import sys
import threading
import time
import types
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, TextIO, cast

import apache_beam as beam
import tqdm
from apache_beam.coders import coder_impl
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    HadoopFileSystemOptions,
    PipelineOptions,
    S3Options,
    StandardOptions,
    _BeamArgumentParser,  # the parser Beam's option classes add their flags to
)

from etagger import conll, fsutil, ranges
from etagger.errors import UsageError
from etagger.packing import RAW_LINE_STRIDE
from etagger.tokenize import CONTROL_CHARS

log = logging.getLogger(__name__)
DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
RAW_BATCH_LINES = 256  # raw lines tokenized per call
# A census pipeline costs about 0.4 s to build and run on the DirectRunner; the driver counts
# a few megabytes of lines in milliseconds. Larger inputs are counted by the workers.
CENSUS_IN_DRIVER_BYTES = 8 << 20


class ReadCounts(NamedTuple):
    """What reading one range skipped or noticed."""

    skipped_sentences: int = 0  # CoNLL sentences a lenient read skipped
    skipped_lines: int = 0  # CoNLL lines a lenient read skipped
    bad_lines: int = 0  # raw lines that are not valid UTF-8 (lenient: skipped)
    empty_lines: int = 0  # raw lines without a token
    control_char_lines: int = 0  # raw lines with control characters (they separate tokens)
    max_length_sentences: int = 0  # raw sentences of exactly max_sentence_tokens tokens: cut lines


class RangeSentences(NamedTuple):
    """The sentences of one input range, in input order."""

    range: ranges.FileRange
    sentences: tuple[conll.Sentence, ...]
    counts: ReadCounts


class RangeArrays(NamedTuple):
    """A range's sentences with arrays that models computed for them: name -> per sentence
    one [T, D] array (or None where the model gave none), in the order of the sentences."""

    read: RangeSentences
    arrays: dict[str, tuple[Any, ...]]


class RangeCoder(beam.coders.PickleCoder):
    """How Beam encodes the elements that carry a whole range (``RangeSentences``,
    ``RangeArrays`` and RunInference's results of one): pickled, as by Beam's fallback coder,
    but sized without encoding them. Beam samples element sizes for its counters by encoding
    the elements, and pickling a range's sentences only to measure them took 7% of a
    tag-corpus run over a 24-range file (bench/RESULTS.md, section 11)."""

    def _create_impl(self):
        dumps, protocol = pickle.dumps, pickle.HIGHEST_PROTOCOL
        return coder_impl.CallbackCoderImpl(
            lambda value: dumps(value, protocol), pickle.loads, estimated_size
        )


def estimated_size(value: Any) -> int:
    """Bytes a range's element takes, roughly: 32 a token (a word and its offsets), plus its
    arrays; twice the example for a result (predictions beside the sentences)."""
    if isinstance(value, RangeSentences):
        return 32 * sum(len(s) for s in value.sentences)
    if isinstance(value, RangeArrays):
        return estimated_size(value.read) + sum(
            a.nbytes for arrays in value.arrays.values() for a in arrays if a is not None
        )
    return 2 * estimated_size(value.example)


for _type in (RangeSentences, RangeArrays, PredictionResult):  # PredictionResult: of one range
    beam.coders.registry.register_coder(_type, RangeCoder)


class InferPerRange(beam.PTransform):
    """Elements that each carry a whole range (of ``element_type``) -> RunInference's
    ``PredictionResult`` of each, through ``handler``. A range is already a large batch, so
    each is passed to the handler on its own (``with_no_batching``) rather than through
    BatchElements, which emits its last batch from ``finish_bundle``: the Dask runner drops
    whatever ``finish_bundle`` emits."""

    def __init__(self, handler: ModelHandler, element_type: type, namespace: str):
        super().__init__()
        self.handler, self.element_type, self.namespace = handler, element_type, namespace

    def expand(self, ranges):
        one_range = beam.Map(lambda r: [r]).with_output_types(
            types.GenericAlias(list, (self.element_type,))  # list[element_type]
        )
        return (
            ranges
            | "OneRangePerCall" >> one_range
            | "Infer"
            >> RunInference(
                self.handler.with_no_batching(), metrics_namespace=self.namespace
            ).with_output_types(PredictionResult)
        )


# ----------------------------------------------------------------------------- runners


def pipeline_options(beam_args: Sequence[str]) -> PipelineOptions:
    """Beam's options from the command line's leftover flags. ``--runner DaskRunner`` names
    Beam's Dask runner; on it each input range is a Dask partition of its own, so that the
    ranges spread over the workers. The driver's filesystems get the same options (an S3
    endpoint, for example)."""
    args = [f"--runner={DASK_RUNNER}" if a == "--runner=DaskRunner" else a for a in beam_args]
    args = [
        DASK_RUNNER if a == "DaskRunner" and args[i - 1 : i] == ["--runner"] else a
        for i, a in enumerate(args)
    ]
    check_beam_args(args)
    options = PipelineOptions(args)
    if is_dask(options) and not any(
        a.startswith(("--dask_partition_size", "--dask_npartitions")) for a in args
    ):
        options = PipelineOptions([*args, "--dask_partition_size=1"])
    fsutil.share_s3_clients()
    FileSystems.set_options(options)
    return options


def check_beam_args(args: Sequence[str]) -> None:
    """Raises UsageError for an option that no Beam pipeline option class knows (a typo that
    Beam would only log and drop)."""
    if any("DaskRunner" in a for a in args):
        import apache_beam.runners.dask.dask_runner  # noqa: F401 (defines the --dask_* options)
    parser = _BeamArgumentParser(allow_abbrev=False, add_help=False)
    # How Beam's own PipelineOptions.get_all_options lists every option: each subclass adds its own.
    for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(list(args))
    if not unknown:
        return
    if not unknown[0].startswith("-"):
        raise UsageError(f"unexpected argument: {unknown[0]} (see --help)")
    flag = unknown[0].split("=", 1)[0]
    known = [name for action in parser._actions for name in action.option_strings]
    close = difflib.get_close_matches(flag, known, n=1, cutoff=0.8)
    hint = f"; did you mean {close[0]}?" if close else "; see --help"
    raise UsageError(f"no such option: {flag} (neither etagger's nor Beam's{hint})")


def filesystem_options(options: PipelineOptions) -> dict[str, Any]:
    """The options that Beam's filesystems read (S3, GCS, HDFS), set on the command line."""
    names: set[str] = set()
    for view in (S3Options, GoogleCloudOptions, HadoopFileSystemOptions):
        parser = _BeamArgumentParser()
        view._add_argparse_args(parser)  # the one list of a view's option names
        names |= {action.dest for action in parser._actions}
    return {k: v for k, v in options.get_all_options(drop_default=True).items() if k in names}


def use_filesystem_options(values: dict[str, Any]) -> None:
    """Makes this process's filesystems use ``values`` (``filesystem_options``)."""
    if values:
        fsutil.share_s3_clients()
        FileSystems.set_options(PipelineOptions.from_dictionary(values))


@functools.cache
def tune_worker_gc() -> None:
    """Fewer cyclic garbage collections in a worker process. A range's sentences are
    hundreds of thousands of small tuples and strings, none of them cyclic garbage, and with
    Python's default thresholds the collector rescans them about every 700 allocations:
    about 1 s of a 13 s tag-corpus run on wikitext-2 (bench/RESULTS.md, section 11)."""
    gc.freeze()  # what is alive now (modules, the model) is never garbage: stop scanning it
    gc.set_threshold(50_000, 20, 100)


class FileSystemsDoFn(beam.DoFn):
    """A DoFn that reads or writes files: its workers get the pipeline's filesystem options
    (an S3 endpoint, say), which the Dask runner's workers and an external SDK worker pool's
    are never given, and fewer garbage collections (``tune_worker_gc``)."""

    def __init__(self, fs_options: dict[str, Any]):
        self.fs_options = fs_options

    def setup(self):
        use_filesystem_options(self.fs_options)
        tune_worker_gc()


def is_dask(options: PipelineOptions) -> bool:
    runner = options.view_as(StandardOptions).runner or ""
    return "DaskRunner" in (runner if isinstance(runner, str) else type(runner).__name__)


def run(build: Callable[[beam.Pipeline], Any], options: PipelineOptions) -> None:
    """Builds the pipeline with ``build(p)``, runs it and waits for it to finish."""
    p = beam.Pipeline(options=options)
    build(p)
    result = p.run()
    try:
        result.wait_until_finish()
    finally:
        client = getattr(result, "client", None)  # the Dask runner leaves its client open
        if client is not None:
            client.close()


# ----------------------------------------------------------------------------- reading


def plan_ranges(
    paths: dict[str, str],
    range_bytes: int,
    splits: dict[str, str] | None = None,
    whole: Iterable[str] = (),
    min_ranges: int = 1,
) -> list[ranges.FileRange]:
    """Byte ranges of the input files (path -> "conll" | "raw"), in the order of ``paths``
    (``ranges.plan``)."""
    sizes = {m.path: m.size_in_bytes for m in fsutil.match(list(paths))}
    return ranges.plan(
        [(p, sizes[p]) for p in paths], paths, range_bytes, splits, set(whole), min_ranges
    )


class _CountRange(FileSystemsDoFn):
    """FileRange -> its census, written to FOLDER/<range>.json; yields the range's name."""

    def __init__(self, options, folder: str, fs_options: dict[str, Any]):
        super().__init__(fs_options)
        self.options, self.folder = options, folder

    def process(self, r: ranges.FileRange):
        census = ranges.census(r, self.options)
        write_receipt(self.folder, r.name, census._asdict())
        yield r.name


def take_census(
    planned: list[ranges.FileRange],
    options,
    beam_options: PipelineOptions,
    work_dir: str,
    driver_bytes: int | None = None,
) -> list[ranges.FileRange]:
    """The ranges numbered by a first pass over them (``ranges.census``); only files cut
    into several ranges need it. The pass runs as a pipeline of its own, on the same runner,
    unless the ranges to count hold at most ``driver_bytes`` (``CENSUS_IN_DRIVER_BYTES``
    when None): then the driver counts them."""
    needed = [r for r in planned if r.ranges_in_file > 1 and r.number < r.ranges_in_file - 1]
    if not needed:
        return planned
    counted = {r.name for r in needed}
    last = [ranges.Census(r.file_number, r.number, 0, 0) for r in planned if r.name not in counted]
    # (A file cut into several ranges is uncompressed: its ranges have ends.)
    limit = CENSUS_IN_DRIVER_BYTES if driver_bytes is None else driver_bytes
    if sum(cast(int, r.end) - r.start for r in needed) <= limit:
        return ranges.numbered(planned, [ranges.census(r, options) for r in needed] + last)
    folder = fsutil.join(work_dir, "census")

    def build(p):
        _ = (
            p
            | "Ranges" >> beam.Create(needed)
            | "Spread" >> beam.Reshuffle()
            | "Count" >> beam.ParDo(_CountRange(options, folder, filesystem_options(beam_options)))
        )

    run(build, beam_options)
    found = read_receipts(folder, [r.name for r in needed])
    censuses = [ranges.Census(**value) for value in found.values()]
    fsutil.delete_tree(folder)
    return ranges.numbered(planned, censuses + last)


def write_receipt(folder: str, name: str, receipt: dict) -> None:
    """Writes a range's receipt, FOLDER/name.json, atomically (``read_receipts`` reads them)."""
    fsutil.write_text(fsutil.join(folder, f"{name}.json"), json.dumps(receipt))


def read_receipts(folder: str, names: Iterable[str]) -> dict[str, dict]:
    """name -> the JSON receipt FOLDER/name.json of every range; an error naming what is
    missing if a range left none (its work was lost)."""
    names = list(names)
    present = {
        fsutil.basename(m.path)[: -len(".json")]: m.path
        for m in fsutil.match(fsutil.join(folder, "*.json"), allow_empty=True)
    }
    missing = [n for n in names if n not in present]
    if missing:
        raise RuntimeError(
            f"{len(missing)} of {len(names)} input ranges left no result in {folder} "
            f"(first: {missing[0]}): the runner lost work; nothing was published"
        )
    return {n: json.loads(fsutil.read_text(present[n])) for n in names}


class Progress:
    """A progress bar on the driver while a pipeline runs, fed by the receipts its ranges
    leave in ``receipts``, so it works on every runner: input bytes done of the total, with
    an ETA, and tokens per second counted from the first finished range on (model loading
    is not in the rate). Off with ``quiet`` and when the stream is not a terminal."""

    def __init__(
        self,
        label: str,
        planned: Sequence[ranges.FileRange],
        receipts: str,
        quiet: bool = False,
        stream: TextIO | None = None,
        every: float = 2.0,
    ):
        self.label, self.receipts, self.every = label, receipts, every
        self.sizes = {r.name: (r.end if r.end is not None else r.start) - r.start for r in planned}
        self.stream = stream or sys.stderr
        self.enabled = not quiet and (stream is not None or sys.stderr.isatty())
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="progress", daemon=True)

    def __enter__(self) -> Progress:
        if self.enabled:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.stop.set()
            self.thread.join()

    def _watch(self) -> None:
        bar = tqdm.tqdm(
            total=sum(self.sizes.values()) or None,
            desc=self.label,
            unit="B",
            unit_scale=True,
            file=self.stream,
            dynamic_ncols=True,
            leave=False,
        )
        seen: set[str] = set()
        tokens, first = 0, None
        while True:
            stopping = self.stop.wait(self.every)
            try:
                found = fsutil.match(fsutil.join(self.receipts, "*.json"), allow_empty=True)
                for m in found:
                    name = fsutil.basename(m.path)[: -len(".json")]
                    if name in seen or name not in self.sizes:
                        continue
                    seen.add(name)
                    tokens += json.loads(fsutil.read_text(m.path)).get("tokens", 0)
                    bar.update(self.sizes[name])
            except (OSError, ValueError):
                pass  # a receipt being renamed into place: the next look finds it
            now = time.monotonic()
            if first is None and tokens:
                first = (now, tokens)  # the rate counts from here: model loading is not in it
            if first is not None and tokens > first[1]:  # a later look, at least ``every`` after it
                bar.set_postfix_str(
                    f"{tokens:,} tokens, {(tokens - first[1]) / (now - first[0]):,.0f} tokens/s"
                )
            elif tokens:
                bar.set_postfix_str(f"{tokens:,} tokens")
            if stopping:
                bar.close()
                return


@functools.lru_cache(maxsize=4)
def _tokenizer(wikitext: bool, max_sentence_tokens: int):
    # One per worker process (building its graph takes about 0.3 s): the Dask runner sets
    # a DoFn up again for every partition, that is for every range.
    from etagger.tokenize import Tokenizer

    return Tokenizer(wikitext=wikitext, max_sentence_tokens=max_sentence_tokens)


class _ReadRange(FileSystemsDoFn):
    """FileRange -> RangeSentences: CoNLL sentences, or raw lines tokenized into sentences
    with ``source`` = the file's base name, ``line`` = its line number, ``index`` =
    line * RAW_LINE_STRIDE + sentence-in-line and character offsets in the line.

    Malformed input is an error naming file and line (conll.ConllFormatError), or skipped
    and counted when ``options.lenient``. Raw sentences longer than ``options.max_sentence_tokens``
    are cut into several (never dropped)."""

    def __init__(self, options, fs_options: dict[str, Any]):
        super().__init__(fs_options)
        self.options = options

    def process(self, r: ranges.FileRange):
        if r.kind == "conll":
            stats = conll.ReadStats()
            sentences = tuple(ranges.conll_sentences(r, self.options, stats))
            yield RangeSentences(
                r, sentences, ReadCounts(stats.skipped_sentences, stats.skipped_lines)
            )
        else:
            yield self._raw(r)

    def _raw(self, r: ranges.FileRange) -> RangeSentences:
        tokenizer = _tokenizer(self.options.wikitext, self.options.max_sentence_tokens)
        counts = dict.fromkeys(ReadCounts._fields, 0)
        source = fsutil.basename(r.path)
        sentences: list[conll.Sentence] = []
        batch: list[tuple[int, str]] = []

        def tokenize():
            for (line_no, _), found in zip(batch, tokenizer.tokenize_lines([t for _, t in batch])):
                counts["empty_lines"] += not found
                for k, s in enumerate(found):
                    counts["max_length_sentences"] += (
                        len(s.tokens) == self.options.max_sentence_tokens
                    )
                    sentences.append(
                        conll.Sentence(
                            columns={"word": tuple(s.tokens)},
                            index=line_no * RAW_LINE_STRIDE + k,
                            source=source,
                            line=line_no,
                            offsets=tuple(zip(s.starts, s.ends)),
                        )
                    )
            batch.clear()

        for line_no, raw in ranges.raw_lines(r):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                if not self.options.lenient:
                    raise conll.ConllFormatError(
                        r.path, line_no, f"not valid UTF-8 ({e.reason})"
                    ) from None
                counts["bad_lines"] += 1
                log.warning("%s:%d: skipping a line that is not valid UTF-8", r.path, line_no)
                continue
            counts["control_char_lines"] += bool(CONTROL_CHARS.search(text))
            batch.append((line_no, text))
            if len(batch) == RAW_BATCH_LINES:
                tokenize()
        if batch:
            tokenize()
        return RangeSentences(r, tuple(sentences), ReadCounts(**counts))


class ReadRanges(beam.PTransform):
    """Input ranges -> RangeSentences, one per range: the ranges are spread over the
    workers (``Reshuffle``), then each is read on its own."""

    def __init__(
        self, planned: Sequence[ranges.FileRange], options, fs_options: dict[str, Any] | None = None
    ):
        super().__init__()
        self.planned, self.options, self.fs_options = list(planned), options, fs_options or {}

    def expand(self, pbegin):
        return (
            pbegin
            | "Ranges" >> beam.Create(self.planned)
            | "Spread" >> beam.Reshuffle()
            | "Read"
            >> beam.ParDo(_ReadRange(self.options, self.fs_options)).with_output_types(
                RangeSentences
            )
        )


def worker_name() -> str:
    """host:pid of the process running this code, for per-worker counts."""
    return f"{socket.gethostname()}:{os.getpid()}"


def add_counts(total: dict[str, Any], counts: dict[str, Any]) -> dict[str, Any]:
    """Adds the numbers (and nested dicts of numbers) of ``counts`` into ``total``."""
    for key, value in counts.items():
        if isinstance(value, dict):
            add_counts(total.setdefault(key, {}), value)
        else:
            total[key] = total.get(key, 0) + value
    return total
