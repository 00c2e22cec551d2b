"""Export a trained model as a SavedModel that takes plain token strings.

Vocabulary lookups, characters and word shapes run inside the graph through the same
etagger.features definitions that preprocessing used, so serving cannot drift from training.

Signatures (B = sentences, T = tokens; padding tokens are "" and mark the sentence ends):
  serving_default(tokens [B,T] string) -> tags [B,T] string (IOB2, "" at padding),
                                          tag_ids [B,T] int32, lengths [B] int32
  tag_with_confidence(tokens)          -> the same plus token_confidence [B,T] float32 (CRF
                                          marginal of the chosen tag) and entity_confidence
                                          [B,T] float32 (lowest token confidence of the entity
                                          the token belongs to, 0 outside entities)
Models trained with POS/chunk features take ``pos`` and ``chunk`` [B,T] string inputs too.
Models with BERT or ELMo features (``bert_handle``, ``elmo_handle``) get the token strings as
their "word" feature; the SavedModel then holds the encoder's variables (and BERT's vocab.txt
asset), so it no longer needs the handle's folder.
Calling the loaded object, ``loaded(tokens)``, is serving_default; this is what Beam's
TFModelHandlerTensor does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf

from etagger import features, fsutil
from etagger.ensemble import as_dirs, load_tagger
from etagger.predictor import META_PATH


def iob2_tags(tags: list[str], scheme: str) -> list[str]:
    """The IOB2 spelling of each tag of ``scheme``. Tag by tag suffices for IOBES and IOB2
    (S- -> B-, E- -> I-); the CRF only emits valid sequences."""
    if scheme == "IOB1":
        raise ValueError("export needs a model trained in IOB2 or IOBES")
    return [{"S": "B", "E": "I"}.get(t[0], t[0]) + t[1:] if t != "O" else t for t in tags]


class ServingModule(tf.Module):
    """The exported graph: strings -> features -> model -> decoded tags (+ confidences)."""

    def __init__(
        self,
        model,
        vocabs: dict,
        feature_config: features.FeatureConfig,
        tag_scheme: str,
        extra_inputs: tuple[str, ...],
    ):
        super().__init__(name="etagger")
        # Track only the variables, not the Keras model: tracking it would make the SavedModel
        # carry every Keras layer's own call traces (hundreds of functions, megabytes).
        object.__setattr__(self, "model", model)
        self.model_variables = model.serving_variables()
        resources = model.serving_resources() if hasattr(model, "serving_resources") else []
        if resources:  # e.g. the BERT tokenizer's vocabulary table (and its vocab.txt asset)
            self.model_resources = resources
        self.feed_words = bool(getattr(model, "reads_words", False))
        self.extractor = features.FeatureExtractor(
            {k: v for k, v in vocabs.items() if k != "tag"}, feature_config
        )
        tags = iob2_tags(vocabs["tag"], tag_scheme)
        self.tag_strings = tf.constant(tags)
        self.is_begin = tf.constant(
            [t.startswith("B-") for t in vocabs["tag"]]
            if tag_scheme == "IOB2"
            else [t[0] in "BS" and t != "O" for t in vocabs["tag"]]
        )
        self.is_outside = tf.constant([t == "O" for t in vocabs["tag"]])
        self.extra_inputs = extra_inputs
        self.serve = self._signature(self._serve)
        self.serve_with_confidence = self._signature(self._serve_with_confidence)

    def _signature(self, fn):
        """A tf.function taking the string inputs as named arguments (tokens, [pos, chunk])."""
        names = ("tokens",) + self.extra_inputs
        specs = [tf.TensorSpec([None, None], tf.string, name=name) for name in names]
        return tf.function(lambda *args: fn(dict(zip(names, args))), input_signature=specs)

    def _features(self, inputs):
        tokens = inputs["tokens"]
        lengths = tf.reduce_sum(tf.cast(tf.not_equal(tokens, ""), tf.int32), axis=1)
        columns = {"word": tokens, **{name: inputs[name] for name in self.extra_inputs}}
        ids = self.extractor(columns)
        ids["char_ids"] = ids["char_ids"].to_tensor()
        ids["length"] = lengths
        if self.feed_words:
            ids["word"] = tokens
        return ids

    def _outputs(self, tag_ids, lengths):
        mask = tf.sequence_mask(lengths, tf.shape(tag_ids)[1])
        tags = tf.where(mask, tf.gather(self.tag_strings, tag_ids), "")
        return {"tags": tags, "tag_ids": tag_ids, "lengths": lengths}

    def _serve(self, inputs):
        ids = self._features(inputs)
        return self._outputs(self.model.decode(ids), ids["length"])

    def _serve_with_confidence(self, inputs):
        ids = self._features(inputs)
        potentials = self.model(ids, training=False)
        tag_ids = self.model.decode_potentials(potentials, ids["length"])
        marginals = self.model.marginals(potentials, ids["length"])
        token_confidence = tf.gather(marginals, tag_ids, batch_dims=2)
        out = self._outputs(tag_ids, ids["length"])
        out["token_confidence"] = token_confidence
        out["entity_confidence"] = self._entity_confidence(tag_ids, token_confidence, ids["length"])
        return out

    def _entity_confidence(self, tag_ids, confidence, lengths):
        """[B,T]: the lowest token confidence over each token's entity (0 outside entities)."""
        mask = tf.sequence_mask(lengths, tf.shape(tag_ids)[1])
        inside = tf.logical_and(mask, tf.logical_not(tf.gather(self.is_outside, tag_ids)))
        begins = tf.logical_and(inside, tf.gather(self.is_begin, tag_ids))
        # Entity number of every token, unique across the batch: a running count of begins.
        entity = tf.cumsum(tf.reshape(tf.cast(begins, tf.int32), [-1])) - 1
        entity = tf.where(tf.reshape(inside, [-1]), tf.maximum(entity, 0), tf.size(entity))
        lowest = tf.math.unsorted_segment_min(
            tf.reshape(confidence, [-1]), entity, tf.size(entity) + 1
        )
        per_token = tf.reshape(tf.gather(lowest, entity), tf.shape(tag_ids))
        return tf.where(inside, per_token, 0.0)


def export(
    model_dirs: str | Path | Sequence[str | Path], out: str | Path, weights: str = "best"
) -> Path:
    """Writes the SavedModel of one model folder, or of the ensemble of several
    (etagger.ensemble), to ``out`` atomically (staging folder, then rename)."""
    model_dirs = as_dirs(model_dirs)
    model, configs, vocabs, info = load_tagger(model_dirs, weights)
    extra = tuple(
        name for name in ("pos", "chunk") if any(getattr(c.model, f"use_{name}") for c in configs)
    )
    feature_config = features.FeatureConfig(**info["features"])
    module = ServingModule(model, vocabs, feature_config, info["tag_scheme"], extra)
    module.__call__ = module.serve
    # What a user (and tag-corpus) needs to know about the model, beside the graph. An
    # ensemble's "config" is its first member's (members share data and document context).
    meta = {
        "config": json.loads(configs[0].to_json()),
        "preprocess": info,
        "inputs": ["tokens", *extra],
        "output_scheme": "IOB2",
        "input_scheme": info["input_scheme"],
    }
    if len(configs) > 1:
        meta["ensemble"] = [
            {"model_dir": str(d), "config": json.loads(c.to_json())}
            for d, c in zip(model_dirs, configs)
        ]

    def save(folder: Path) -> None:
        tf.saved_model.save(
            module,
            str(folder),
            signatures={
                "serving_default": module.serve,
                "tag_with_confidence": module.serve_with_confidence,
            },
        )
        with fsutil.atomic_write(folder.joinpath(*META_PATH)) as f:
            json.dump(meta, f, indent=2, sort_keys=True)

    return fsutil.atomic_folder(save, out)
