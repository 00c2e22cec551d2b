"""A loaded exported model (``cli.py export``): lists of token strings in, IOB2 tags out.

Shared by the Beam RunInference handler (``pipelines.tag_corpus``) and ``cli.py tag``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from etagger import packing, tagschemes

# Beside an exported SavedModel's graph, `cli.py export` writes what tagging needs to know.
META_PATH = ("assets.extra", "etagger.json")


def read_meta(path: str | Path) -> dict:
    """The etagger.json of the exported model at ``path`` (any filesystem Beam reads):
    config, preprocess info, inputs, schemes."""
    from etagger import fsutil

    meta = fsutil.join(str(path), *META_PATH)
    if not fsutil.exists(meta):
        raise FileNotFoundError(
            f"{path}: not an exported etagger model (no {'/'.join(META_PATH)}; "
            "make one with `cli.py export`)"
        )
    return json.loads(fsutil.read_text(meta))


def load_exported(path: str | Path, meta: dict | None = None):
    """The SavedModel at the local ``path``, after registering the ops its graph uses besides
    TensorFlow's own: tensorflow-text's constrained Viterbi (all of tensorflow-text for a
    model with contextual features, whose graph tokenizes word pieces), and etagger's ops
    when the model was exported with ``--fused-lstm`` or ``--fused-crf`` (``meta``: its
    etagger.json, read if not given)."""
    import tensorflow as tf

    from etagger import ops, textops
    from etagger.config import Config

    meta = meta if meta is not None else read_meta(path)
    members = [meta["config"]] + [m["config"] for m in meta.get("ensemble", [])]
    if any(Config.from_dict(m).model.reads_words for m in members):
        import tensorflow_text  # noqa: F401  (registers every tensorflow-text op)
    textops.load()
    ops.load_if_needed(meta)
    return tf.saved_model.load(str(path))


def document_context(meta: dict) -> int:
    """Tokens of neighbouring sentences the exported model reads together, as one sequence
    (``document_context``) or in its BERT encoder only (``bert_pack_tokens``); 0: none."""
    model = _model_config(meta)
    return model.get("document_context", 0) or model.get("bert_pack_tokens", 0)


def takes_pack_ids(meta: dict) -> bool:
    """Whether the exported model's signatures take ``pack_ids`` (``bert_pack_tokens``)."""
    return bool(_model_config(meta).get("bert_pack_tokens", 0))


def _model_config(meta: dict) -> dict:
    """The exported model's ModelConfig fields; empty for metadata without them, which the
    callers that need more report."""
    return meta.get("config", {}).get("model", {})


def _column(signature_input: str) -> str:
    """The sentence column a signature input takes: "tokens" takes "word"."""
    return "word" if signature_input == "tokens" else signature_input


class Tagged(NamedTuple):
    """One sentence's predictions: IOB2 tags and, when asked for, the CRF marginal of each
    token's tag and each token's entity confidence (the lowest marginal over its entity)."""

    tags: list[str]
    token_confidence: list[float] | None = None
    entity_confidence: list[float] | None = None


class Predictor:
    """Loads the SavedModel at ``path`` and tags batches of sentences with it.

    Args:
      path: the exported model folder; a remote one (``s3://``, ``gs://``) is copied to a
        local temporary folder first.
      with_confidence: call the ``tag_with_confidence`` signature (CRF marginals of the
        chosen tags, per token and per entity) instead of ``serving_default``.
    """

    def __init__(self, path: str | Path, with_confidence: bool = False):
        from etagger import fsutil

        start = time.perf_counter()
        self.path = fsutil.local_folder(str(path))
        self.meta = read_meta(self.path)
        # The signature's inputs: "tokens", then "pos"/"chunk" if used. "tokens" is the "word"
        # column; the name stays because every exported model and its clients use it.
        self.inputs: list[str] = self.meta["inputs"]
        self.takes_pack_ids = takes_pack_ids(self.meta)
        self.with_confidence = with_confidence
        self.saved_model = load_exported(self.path, self.meta)
        self.signature = self.saved_model.signatures[
            "tag_with_confidence" if with_confidence else "serving_default"
        ]
        # The first call initialises the graph (~0.5 s): count it as loading, not tagging.
        self([{_column(name): ["Warm", "up"] for name in self.inputs}])
        self.load_seconds = time.perf_counter() - start

    def _pack_feed(self, count: int, pack_ids: Sequence[int] | None) -> dict:
        """The ``pack_ids`` input of a model that takes it (each sentence its own pack unless
        given), else nothing."""
        import tensorflow as tf

        if not self.takes_pack_ids:
            return {}
        return {"pack_ids": tf.constant(range(count) if pack_ids is None else pack_ids, tf.int32)}

    def __call__(
        self,
        sentences: Sequence[Mapping[str, Sequence[str]]],
        pack_ids: Sequence[int] | None = None,
    ) -> list[Tagged]:
        """Tags sentences given as column dicts ({"word": [...], "pos": [...], ...}; only
        "word" unless the model takes POS/chunk); the confidences only when
        ``with_confidence``. ``pack_ids``: for a model whose encoder reads packs of sentences,
        the pack of each sentence (0, 1, ... in order); by default each is a pack of its own."""
        import tensorflow as tf

        from etagger.stored_vectors import padded_words

        feeds = self._pack_feed(len(sentences), pack_ids)
        for name in self.inputs:
            column = _column(name)
            if any(column not in s for s in sentences):
                raise ValueError(f"the model needs a {column!r} column for every sentence")
            feeds[name] = tf.constant(padded_words([s[column] for s in sentences]), tf.string)
        result = {k: v.numpy() for k, v in self.signature(**feeds).items()}
        outs = []
        for i, s in enumerate(sentences):
            n = len(s["word"])
            tags = [t.decode() for t in result["tags"][i, :n]]
            if self.with_confidence:
                token = result["token_confidence"][i, :n].tolist()
                outs.append(Tagged(tags, token, result["entity_confidence"][i, :n].tolist()))
            else:
                outs.append(Tagged(tags))
        return outs

    def marginals(
        self, sentences: Sequence[Sequence[str]], pack_ids: Sequence[int] | None = None
    ) -> list[np.ndarray]:
        """Per sentence of words, the CRF marginals [T, K] float32 of every tag of the model's
        training scheme, in the order of ``self.meta["tags"]`` (models exported with the
        ``tag_marginals`` signature). Only for models that read the words alone.
        ``pack_ids`` as for ``__call__``."""
        import tensorflow as tf

        if "tag_marginals" not in self.saved_model.signatures or "tags" not in self.meta:
            raise ValueError(f"{self.path}: exported without tag marginals; export it again")
        if self.inputs != ["tokens"]:
            raise ValueError(f"{self.path}: the model needs {self.inputs[1:]} columns too")
        from etagger.stored_vectors import padded_words

        signature = self.saved_model.signatures["tag_marginals"]
        tokens = tf.constant(padded_words(sentences), tf.string)
        feeds = self._pack_feed(len(sentences), pack_ids)
        result = signature(tokens=tokens, **feeds)["marginals"].numpy()
        return [result[i, : len(words)] for i, words in enumerate(sentences)]

    @property
    def document_context(self) -> int:
        """Tokens of neighbouring sentences the model was trained to read together (0: none)."""
        return document_context(self.meta)

    def tag_packs(
        self, packs: Sequence[Sequence[Mapping[str, Sequence[str]]]]
    ) -> list[list[Tagged]]:
        """Tags packs of consecutive sentences (``packing.pack_documents``), each read as one
        sequence (by the whole model, or by its encoder only when it takes ``pack_ids``);
        returns per pack the predictions of its sentences, as ``__call__`` does.

        An entity the model runs across a sentence boundary is cut there: each sentence's tags
        are valid IOB2 on their own (a sentence opening inside it starts with B-), as
        ``cli.py evaluate`` reads them. Its entity confidence stays that of the whole run."""
        if not packs:
            return []
        if self.takes_pack_ids:  # the encoder joins each pack; every sentence is tagged alone
            flat = self(
                [s for pack in packs for s in pack],
                [i for i, pack in enumerate(packs) for _ in pack],
            )
            starts = np.cumsum([0] + [len(pack) for pack in packs])
            return [flat[a:b] for a, b in zip(starts[:-1], starts[1:])]
        joined = [
            {name: [token for s in pack for token in s[name]] for name in pack[0]} for pack in packs
        ]
        results = []
        for pack, out in zip(packs, self(joined)):
            present = {k: v for k, v in out._asdict().items() if v is not None}
            lengths = [len(sentence["word"]) for sentence in pack]
            parts = [Tagged(**part) for part in packing.split_pack(present, lengths)]
            if len(pack) > 1:  # only a cut can leave a sentence opening inside an entity
                parts = [
                    p._replace(
                        tags=tagschemes.from_chunks(len(p.tags), tagschemes.chunks(p.tags), "IOB2")
                    )
                    for p in parts
                ]
            results.append(parts)
        return results
