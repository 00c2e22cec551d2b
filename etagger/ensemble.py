"""An ensemble of taggers trained on the same preprocessed data (e.g. the same config with
different seeds), scored and decoded as one tagger.

A member CRF gives log p_m(y | x) = score_m(y) - log Z_m(x), with score_m the sum of its tag
potentials and transition weights along y. Averaging the members' potentials and transition
weights gives a CRF of the same form whose best path maximises the mean of log p_m(y | x) over
the members (log Z_m does not depend on y): the path with the highest geometric mean of the
members' probabilities. Softmax members average their log-probabilities, the same rule per
token. Decoding keeps the scheme constraints, so no invalid sequence is emitted.

`Ensemble` has the methods of `etagger.model.Tagger` that prediction and export call, so
``evaluate``, ``export`` and, through the export, ``tag-corpus`` take ensembles as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from etagger import crf as crf_lib
from etagger import ops
from etagger.model import Tagger


def _same_mask(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return a is b or (a is not None and b is not None and np.array_equal(a, b))


def _crf(member: Tagger) -> crf_lib.CRF:
    if member.crf is None:
        raise ValueError("a softmax member has no CRF")
    return member.crf


class Ensemble(tf.Module):
    """The mean of ``members``' tag scores. Members share the tag vocabulary and decoder."""

    def __init__(self, members: Sequence[Tagger]):
        super().__init__(name="ensemble")
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        decoders = {m.config.decoder for m in members}
        if len(decoders) > 1 or len({m.num_tags for m in members}) > 1:
            raise ValueError(
                f"ensemble members differ in decoder {sorted(decoders)} or in tag count"
            )
        self.members = list(members)
        first = self.crf
        if first is not None and any(
            m.crf is None or not _same_mask(m.crf.decode_mask, first.decode_mask)
            for m in self.members[1:]
        ):
            raise ValueError("ensemble members have different tag-scheme constraints")

    @property
    def crf(self):
        """The first member's CRF (None for softmax members): its constraints are everyone's."""
        return self.members[0].crf

    @property
    def reads_words(self) -> bool:
        """Whether some member reads the word strings (BERT or ELMo features)."""
        return any(m.reads_words for m in self.members)

    def serving_resources(self) -> list:
        """Every member's serving resources (see `Tagger.serving_resources`)."""
        return [r for m in self.members for r in m.serving_resources()]

    def serving_variables(self) -> list:
        """Every member's serving variables (see `Tagger.serving_variables`)."""
        return [v for m in self.members for v in m.serving_variables()]

    def __call__(self, features: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """Features -> the members' mean potentials [B, T, K] (softmax members: the mean
        log-probabilities)."""
        return self._mean([m(features, training=training) for m in self.members])

    def serving_potentials(
        self, features: Mapping[str, tf.Tensor], fused_lstm: ops.LstmProducts | None = None
    ) -> tf.Tensor:
        """``__call__`` at inference through each member's `Tagger.serving_potentials`."""
        return self._mean([m.serving_potentials(features, fused_lstm) for m in self.members])

    def _mean(self, scores: list[tf.Tensor]) -> tf.Tensor:
        if self.crf is None:
            scores = [tf.nn.log_softmax(s) for s in scores]
        return tf.add_n(scores) / len(scores)

    def params(self):
        """The members' mean (transitions, start, end), scheme-forbidden entries DISALLOWED."""
        return tuple(
            tf.add_n(list(p)) / len(self.members)
            for p in zip(*(_crf(m).params() for m in self.members))
        )

    def decode(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        return self.decode_potentials(self(features), features["length"])

    def decode_potentials(self, potentials: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
        if self.crf is not None:
            return crf_lib.viterbi_decode(potentials, lengths, self.params(), self.crf.decode_mask)
        return self.members[0].decode_potentials(potentials, lengths)

    def marginals(
        self, potentials: tf.Tensor, lengths: tf.Tensor, fused: bool = False
    ) -> tf.Tensor:
        if self.crf is not None:
            potentials = tf.cast(potentials, tf.float32)
            return crf_lib.serving_marginals(potentials, lengths, self.params(), fused)
        return tf.nn.softmax(potentials)


def same_data(model_dirs: Sequence[Path], loaded: Sequence[tuple]) -> None:
    """Raises unless every model (``loaded``: `load_model` results of ``model_dirs``) was
    trained on the same preprocessing (vocabularies, feature definitions, tag scheme) and
    document context (of the model, or of its encoder): their ids and tags must mean the same
    things, and they must read the same packs of sentences."""

    def fingerprint(model, config, vocabs, info):
        return (
            vocabs,
            info["features"],
            info["tag_scheme"],
            info["input_scheme"],
            config.model.document_context,
            config.model.bert_pack_tokens,
        )

    first = fingerprint(*loaded[0])
    for other, member in zip(model_dirs[1:], loaded[1:]):
        if fingerprint(*member) != first:
            raise ValueError(
                f"{other} was trained on other vocabularies, features, tag scheme or "
                f"document context than {model_dirs[0]}: it cannot join that ensemble"
            )


def as_dirs(model_dirs: str | Path | Sequence[str | Path]) -> list[Path]:
    """One model folder or several, as a list of folders."""
    return (
        [Path(model_dirs)] if isinstance(model_dirs, (str, Path)) else [Path(d) for d in model_dirs]
    )


def load_tagger(model_dirs: str | Path | Sequence[str | Path], weights: str = "best"):
    """(model, member configs, vocabs, preprocess info) of one model folder, or the
    `Ensemble` of several trained on the same data (checked by `same_data`)."""
    from etagger.train import load_model

    model_dirs = as_dirs(model_dirs)
    if len(model_dirs) == 1:
        model, config, vocabs, info = load_model(model_dirs[0], weights)
        return model, [config], vocabs, info
    loaded = [load_model(d, weights) for d in model_dirs]
    same_data(model_dirs, loaded)
    _, _, vocabs, info = loaded[0]
    return Ensemble([m for m, *_ in loaded]), [c for _, c, *_ in loaded], vocabs, info
