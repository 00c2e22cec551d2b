"""Per-token vectors that preprocessing computes once with a model and stores in the
TFRecords, so that training does not run that model in every step:

- contextual word vectors of a frozen BERT encoder (``preprocess --contextual``), computed by
  the tagger's own layer (``etagger.layers.contextual.BertWordEmbedding``). A tagger reads
  them instead of running its encoder when the data's fingerprint is its encoder's
  (``train.input_names``); an exported model computes them in-graph from the token strings;
- soft targets: a teacher tagger's CRF marginals (``preprocess --soft-targets``), the silver
  labels that ``train --silver`` distils from.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from etagger import conll, packing

if TYPE_CHECKING:
    from etagger.config import ModelConfig

BATCH_SENTENCES = 64  # most sentences per encoder call
BATCH_TOKENS = 4096  # most tokens per encoder call


@dataclasses.dataclass(frozen=True)
class ContextualSpec:
    """Which vectors a frozen BERT encoder gives a word: the ``bert_*`` fields of a
    ModelConfig, and the ``--contextual*`` options of preprocess."""

    handle: str
    pooling: str = "first"
    layers: int = 1
    max_pieces: int = 256
    # > 0: the encoder reads packs of consecutive sentences of one document of at most this
    # many tokens (packing.pack_sentences), so each word's vector sees the sentences around it.
    pack_tokens: int = 0

    @classmethod
    def of_model(cls, config: ModelConfig) -> ContextualSpec | None:
        """The spec of a model's BERT features; None without them or when the encoder is
        fine-tuned (its vectors then change as it trains)."""
        if config.bert_handle is None or config.bert_trainable:
            return None
        return cls(
            config.bert_handle,
            config.bert_pooling,
            config.bert_layers,
            config.bert_max_pieces,
            config.bert_pack_tokens,
        )

    def fingerprint(self) -> str:
        """SHA-256 of the encoder's files (graph, weights, vocabulary, bert_config.json)
        and of the pooling settings: equal fingerprints give equal vectors."""
        from etagger.layers.contextual import resolve_handle

        return _fingerprint(
            str(resolve_handle(self.handle)),
            self.pooling,
            self.layers,
            self.max_pieces,
            self.pack_tokens,
        )


@functools.cache
def _fingerprint(folder: str, pooling: str, layers: int, max_pieces: int, pack_tokens: int) -> str:
    from etagger.layers.contextual import read_bert_config

    root = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.name == "fingerprint.pb":  # TensorFlow's own summary of the files below
            continue
        digest.update(str(path.relative_to(root)).encode("utf-8") + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    settings = {
        "bert_config": read_bert_config(root),
        "pooling": pooling,
        "layers": layers,
        "max_pieces": max_pieces,
    }
    if pack_tokens:  # absent when 0, so sentence-level vectors keep their fingerprint
        settings["pack_tokens"] = pack_tokens
    digest.update(json.dumps(settings, sort_keys=True).encode("utf-8"))
    return digest.hexdigest()


def padded_words(sentences: Sequence[Sequence[str]]) -> np.ndarray:
    """Sentences of words -> [B, longest] object array, "" at padding."""
    padded = np.full((len(sentences), max(len(s) for s in sentences)), "", dtype=object)
    for i, words in enumerate(sentences):
        padded[i, : len(words)] = words
    return padded


class WordVectors:
    """A frozen BERT encoder as preprocessing runs it: sentences (lists of words) -> per
    sentence its [T, H] float16 word vectors, from length-sorted calls of the tagger's layer."""

    def __init__(self, spec: ContextualSpec):
        import tensorflow as tf

        from etagger.layers.contextual import BertWordEmbedding

        self.spec = spec
        self.layer = BertWordEmbedding(
            spec.handle, spec.pooling, spec.layers, False, spec.max_pieces
        )
        self._call = tf.function(
            lambda words: tf.cast(self.layer(words), tf.float16),
            input_signature=[tf.TensorSpec([None, None], tf.string)],
        )
        self.dim = int(self._call(tf.constant([["."]])).shape[-1])

    def __call__(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Each of ``sentences`` encoded on its own."""
        import tensorflow as tf

        return _per_sentence(
            sentences,
            self.dim,
            lambda batch: self._call(tf.constant(padded_words(batch), tf.string)).numpy(),
        )

    def of_sentences(self, sentences: Sequence[conll.Sentence]) -> list[np.ndarray]:
        """Per sentence its vectors, from the packs of ``spec.pack_tokens`` (consecutive
        sentences of a file, in file order) when that is set, else from each sentence alone."""
        packs = packing.pack_sentences(sentences, self.spec.pack_tokens)
        vectors = self([[w for s in pack for w in s.words] for pack in packs])
        out = []
        for pack, rows in zip(packs, vectors):
            start = 0
            for s in pack:
                out.append(rows[start : start + len(s)])
                start += len(s)
        return out


class SoftTargets:
    """A teacher (an exported tagger) as preprocessing runs it: sentences -> per sentence its
    CRF marginals [T, K] float16 over the data's tags ``tags`` (vocab/tags.txt order). A
    teacher whose encoder reads packs of sentences (``bert_pack_tokens``) gets them in packs.

    Raises ValueError when the teacher tags in another scheme or set of tags, reads POS or
    chunk columns, or reads whole packs of sentences as one sequence (``document_context``:
    its marginals would then run across sentence boundaries)."""

    def __init__(self, model_path: str, tags: Sequence[str]):
        from etagger.predictor import Predictor

        self.predictor = Predictor(model_path)
        teacher_tags = self.predictor.meta.get("tags", [])
        if sorted(teacher_tags) != sorted(tags):
            raise ValueError(
                f"teacher {model_path} tags {sorted(teacher_tags)}, the data {sorted(tags)}"
            )
        if self.predictor.document_context and not self.predictor.takes_pack_ids:
            raise ValueError(f"teacher {model_path} reads document context: not supported")
        self.pack_tokens = self.predictor.document_context
        self.columns = [teacher_tags.index(t) for t in tags]

    def of_sentences(self, sentences: Sequence[conll.Sentence]) -> list[np.ndarray]:
        """Per sentence (consecutive sentences of a file, in file order) its marginals, from
        length-sorted calls of at most BATCH_SENTENCES packs and BATCH_TOKENS tokens."""
        packs = packing.pack_sentences(sentences, self.pack_tokens)
        per_pack: list[list[np.ndarray]] = [[] for _ in packs]
        lengths = [sum(len(s) for s in pack) for pack in packs]
        for chunk in packing.length_sorted_calls(lengths, BATCH_SENTENCES, BATCH_TOKENS):
            marginals = self.predictor.marginals(
                [s.words for i in chunk for s in packs[i]],
                [k for k, i in enumerate(chunk) for _ in packs[i]],
            )
            start = 0
            for i in chunk:
                per_pack[i] = [
                    m[:, self.columns].astype(np.float16)
                    for m in marginals[start : start + len(packs[i])]
                ]
                start += len(packs[i])
        return [m for rows in per_pack for m in rows]


def _per_sentence(
    sentences: Sequence[Sequence[str]],
    width: int,
    call: Callable[[list[Sequence[str]]], np.ndarray],
) -> list[np.ndarray]:
    """Per sentence its [T, width] float16 rows, from ``call`` (some sentences -> one array
    per sentence of at least T rows) on length-sorted batches of at most BATCH_SENTENCES
    sentences and BATCH_TOKENS padded tokens."""
    out = [np.zeros((0, width), np.float16)] * len(sentences)
    lengths = [len(s) for s in sentences]
    for chunk in packing.length_sorted_calls(lengths, BATCH_SENTENCES, BATCH_TOKENS):
        for i, rows in zip(chunk, call([sentences[i] for i in chunk])):
            out[i] = rows[: lengths[i]].astype(np.float16)
    return out
