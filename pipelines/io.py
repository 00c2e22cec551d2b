"""Beam transforms that read the project's inputs, shared by the pipelines:
CoNLL column files (``ReadConll``) and raw text, one document or sentence per line
(``ReadRawText``). Both yield ``conll.Sentence`` and count what they skip in Beam metrics.

``options`` is any object with the attributes ``columns``, ``lenient``, ``max_tokens`` and
``wikitext`` (``preprocess.PreprocessOptions``, ``tag_corpus.TagOptions``, ``ReadOptions``).

Counters (in the ``namespace`` given, "preprocess" by default):
  skipped_sentences:PATH, skipped_lines:PATH  CoNLL sentences / lines a lenient read skipped
  bad_lines           raw lines that are not valid UTF-8 (lenient: skipped)
  empty_lines         raw lines without a token (blank, whitespace or control characters only)
  control_char_lines  raw lines with control characters (they separate tokens, never join them)
  max_length_sentences raw sentences of exactly max_tokens tokens: where over-long lines were cut
  empty_files         files without a single sentence (only where an empty file is allowed)
"""
from __future__ import annotations

import dataclasses
import glob
import logging
import os
import re
from typing import Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics

from etagger import conll

log = logging.getLogger(__name__)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # Cc without tab, LF, CR


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """The reading options on their own, for callers without a pipeline options class."""

    columns: tuple[str, ...] = conll.CONLL2003_COLUMNS
    lenient: bool = False
    max_tokens: int = 1000  # CoNLL: longer sentences are an error/skip (0 = no limit); raw: cut
    wikitext: bool = False


def _paths(pattern_or_paths: str | Sequence[str]) -> list[str]:
    if isinstance(pattern_or_paths, str):
        paths = sorted(glob.glob(pattern_or_paths))
        if not paths:
            raise FileNotFoundError(f"no files match {pattern_or_paths}")
        return paths
    return list(pattern_or_paths)


class ReadConll(beam.PTransform):
    """CoNLL file(s) -> PCollection of conll.Sentence (``source`` = the path as given).

    Raises conll.ConllFormatError (file and line) on malformed input unless
    ``options.lenient``; a file without sentences is an error too unless lenient or
    ``allow_empty`` (then it is counted in ``empty_files``).
    """

    def __init__(self, path: str | Sequence[str], options, namespace: str = "preprocess",
                 allow_empty: bool = False):
        super().__init__()
        self.path, self.options = path, options
        self.namespace, self.allow_empty = namespace, allow_empty

    def expand(self, pbegin):
        options, namespace, allow_empty = self.options, self.namespace, self.allow_empty
        paths = [self.path] if isinstance(self.path, str) else list(self.path)
        empty_files = Metrics.counter(namespace, "empty_files")

        def read(path):
            stats = conll.ReadStats()
            found = 0
            for sentence in conll.read_conll(path, options.columns, options.lenient, options.max_tokens, stats):
                found += 1
                yield sentence
            # Named after the file, so that a pipeline can report the skips per input.
            Metrics.counter(namespace, f"skipped_sentences:{path}").inc(stats.skipped_sentences)
            Metrics.counter(namespace, f"skipped_lines:{path}").inc(stats.skipped_lines)
            if not found and not stats.skipped_sentences:
                if allow_empty:
                    empty_files.inc()
                    log.warning("%s: no sentences in file", path)
                    return
                if not options.lenient:
                    raise conll.ConllFormatError(path, 1, "no sentences in file")
                log.warning("%s:1: no sentences in file", path)

        return pbegin | beam.Create(paths) | beam.FlatMap(read)


class _TokenizeLines(beam.DoFn):
    """Batches of (source, line_no, text) -> conll.Sentence with character offsets."""

    def __init__(self, options, namespace: str = "preprocess"):
        self.options = options
        self.empty_lines = Metrics.counter(namespace, "empty_lines")
        self.max_length = Metrics.counter(namespace, "max_length_sentences")

    def setup(self):
        from etagger.tokenize import Tokenizer

        self.tokenizer = Tokenizer(wikitext=self.options.wikitext,
                                   max_sentence_tokens=self.options.max_tokens)

    def process(self, batch):
        limit = self.options.max_tokens
        for (source, line_no, _), sentences in zip(batch, self.tokenizer.tokenize_lines([t for _, _, t in batch])):
            if not sentences:
                self.empty_lines.inc()
            for k, s in enumerate(sentences):
                if len(s.tokens) == limit:
                    self.max_length.inc()
                yield conll.Sentence(columns={"word": tuple(s.tokens)}, index=line_no * 65536 + k,
                                     source=source, line=line_no, offsets=tuple(zip(s.starts, s.ends)))


class ReadRawText(beam.PTransform):
    """Files matching a glob, or a list of files (one document or sentence per line) ->
    conll.Sentence with ``source`` = the file's base name, ``line`` = its line number,
    ``index`` = line * 65536 + sentence-in-line, and character offsets in the line.

    Lines that are not valid UTF-8 are an error naming file and line, or skipped and
    counted when ``options.lenient``. Sentences longer than ``options.max_tokens`` are cut
    into several (never dropped).
    """

    def __init__(self, pattern: str | Sequence[str], options, namespace: str = "preprocess"):
        super().__init__()
        self.pattern, self.options, self.namespace = pattern, options, namespace

    def expand(self, pbegin):
        lenient = self.options.lenient
        bad_lines = Metrics.counter(self.namespace, "bad_lines")
        control_lines = Metrics.counter(self.namespace, "control_char_lines")
        empty_files = Metrics.counter(self.namespace, "empty_files")

        def lines(path):
            any_line = False
            with open(path, "rb") as f:
                for line_no, raw in enumerate(f, start=1):
                    any_line = True
                    try:
                        text = raw.decode("utf-8")
                    except UnicodeDecodeError as e:
                        if not lenient:
                            raise conll.ConllFormatError(path, line_no, f"not valid UTF-8 ({e.reason})") from None
                        bad_lines.inc()
                        log.warning("%s:%d: skipping a line that is not valid UTF-8", path, line_no)
                        continue
                    if _CONTROL.search(text):
                        control_lines.inc()
                    yield os.path.basename(path), line_no, text
            if not any_line:
                empty_files.inc()

        return (pbegin
                | beam.Create(_paths(self.pattern))
                | beam.FlatMap(lines)
                | beam.BatchElements(min_batch_size=64, max_batch_size=512)
                | beam.ParDo(_TokenizeLines(self.options, self.namespace)))
