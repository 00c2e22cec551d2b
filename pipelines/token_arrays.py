"""RunInference steps that compute per-token arrays for the sentences of input ranges, for
preprocess to store: contextual word vectors of a frozen encoder (``--contextual``) and a
teacher's CRF marginals (``--soft-targets``).

    RangeSentences | ToArrays() | AddTokenArrays(handler) | ... -> RangeArrays

Each step passes one range per model call (``io.InferPerRange``, as tag-corpus does), and
the model cuts it into length-sorted calls itself. The models
load once per worker process (``functools.lru_cache``), whatever the runner does with the
handler.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any, cast

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from etagger import conll
from etagger.stored_vectors import ContextualSpec, SoftTargets, WordVectors
from pipelines import io

NAMESPACE = "preprocess"


@functools.lru_cache(maxsize=2)
def _word_vectors(spec: ContextualSpec) -> WordVectors:
    return WordVectors(spec)


@functools.lru_cache(maxsize=2)
def _soft_targets(model_path: str, tags: tuple[str, ...]) -> SoftTargets:
    return SoftTargets(model_path, tags)


class TokenArraysHandler(ModelHandler[io.RangeArrays, PredictionResult, Any]):
    """RunInference handler: a range -> per sentence the model's [T, D] array (or None).
    ``name`` is the array's name in ``RangeArrays.arrays`` and in the records."""

    name = ""

    def __init__(self, fs_options: dict | None = None):
        super().__init__()
        self.fs_options = fs_options or {}

    def run_inference(
        self, batch: Sequence[io.RangeArrays], model: Any, inference_args=None
    ) -> Iterable[PredictionResult]:
        return [PredictionResult(example, self.compute(example.read, model)) for example in batch]

    def compute(self, read: io.RangeSentences, model: Any) -> tuple[np.ndarray | None, ...]:
        """Per sentence of ``read`` its array, or None."""
        raise NotImplementedError

    def get_num_bytes(self, batch: Sequence[io.RangeArrays]) -> int:
        return sum(len(w) for example in batch for s in example.read.sentences for w in s.words)


class ContextualHandler(TokenArraysHandler):
    """Contextual word vectors [T, H] float16 of a frozen BERT encoder (a local folder), of
    each sentence alone or of packs of them (``ContextualSpec.pack_tokens``)."""

    name = "contextual"

    def __init__(self, spec: ContextualSpec):
        super().__init__()
        self.spec = spec

    def load_model(self) -> WordVectors:
        return _word_vectors(self.spec)

    def compute(self, read: io.RangeSentences, model: Any) -> tuple[np.ndarray | None, ...]:
        return tuple(model.of_sentences(read.sentences))


class SoftTargetsHandler(TokenArraysHandler):
    """A teacher's CRF marginals [T, K] float16 over the data's ``tags``, for the sentences
    of the ``splits`` whose ``conll.sentence_key`` is not in ``held_out``; None for the rest."""

    name = "soft_tags"

    def __init__(
        self,
        model_path: str,
        tags: Sequence[str],
        held_out: frozenset[str],
        splits: tuple[str, ...],
        fs_options: dict | None = None,
    ):
        super().__init__(fs_options)
        self.model_path, self.tags = model_path, tuple(tags)
        self.held_out, self.splits = held_out, splits

    def load_model(self) -> SoftTargets:
        io.use_filesystem_options(self.fs_options)  # the teacher may be remote (s3://, gs://)
        return _soft_targets(self.model_path, self.tags)

    def compute(self, read: io.RangeSentences, model: Any) -> tuple[np.ndarray | None, ...]:
        if read.range.split not in self.splits:
            return (None,) * len(read.sentences)
        wanted = [
            i
            for i, s in enumerate(read.sentences)
            if conll.sentence_key(s.words) not in self.held_out
        ]
        wanted_set = set(wanted)
        out: list[np.ndarray | None] = [None] * len(read.sentences)
        if wanted:
            # A teacher that reads packs gets every sentence: a held-out one may be a wanted
            # one's context. Any other teacher gets the wanted ones only.
            given = range(len(read.sentences)) if model.pack_tokens else wanted
            marginals = model.of_sentences([read.sentences[i] for i in given])
            for i, rows in zip(given, marginals):
                if i in wanted_set:
                    out[i] = rows
        return tuple(out)


def _attach(result: PredictionResult, name: str) -> io.RangeArrays:
    example = cast(io.RangeArrays, result.example)
    arrays = cast(tuple[Any, ...], result.inference)
    return example._replace(arrays={**example.arrays, name: arrays})


class AddTokenArrays(beam.PTransform):
    """RangeArrays -> the same with the handler's arrays added under ``handler.name``."""

    def __init__(self, handler: TokenArraysHandler):
        super().__init__()
        self.handler = handler

    def expand(self, ranges):
        return (
            ranges
            | "Infer" >> io.InferPerRange(self.handler, io.RangeArrays, NAMESPACE)
            | "Attach" >> beam.Map(_attach, self.handler.name).with_output_types(io.RangeArrays)
        )


def to_arrays(read: io.RangeSentences) -> io.RangeArrays:
    """A range with no arrays yet."""
    return io.RangeArrays(read, {})
