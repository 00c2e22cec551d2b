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
  tag_marginals(tokens)                -> marginals [B,T,K] float32 (CRF marginals of every
                                          tag of the model's training scheme, in the order of
                                          etagger.json's "tags"; 0 at padding), lengths [B]
Models trained with POS/chunk features take ``pos`` and ``chunk`` [B,T] string inputs too.
Models whose BERT encoder reads packs of sentences (``bert_pack_tokens``) take ``pack_ids``
[B] int32 too: rows with equal ids (0, 1, ... in row order) are consecutive sentences of one
pack, which the encoder reads joined; every row is still tagged as a sentence of its own.
Models with BERT or ELMo features (``bert_handle``, ``elmo_handle``) get the token strings as
their "word" feature; the SavedModel then holds the encoder's variables (and BERT's vocab.txt
asset), so it no longer needs the handle's folder.
Calling the loaded object, ``loaded(tokens)``, is serving_default; this is what Beam's
TFModelHandlerTensor does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from etagger import features, fsutil, ops
from etagger.config import Config
from etagger.ensemble import as_dirs, load_tagger
from etagger.errors import InputError
from etagger.predictor import META_PATH, load_exported, read_meta


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
        fused_lstm: ops.LstmProducts | None = None,
        fused_crf: bool = False,
        pack_inputs: bool = False,
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
        self.fused_lstm = fused_lstm
        self.fused_crf = fused_crf
        self.pack_inputs = pack_inputs
        self.serve = self._signature(self._serve)
        self.serve_with_confidence = self._signature(self._serve_with_confidence)
        self.serve_marginals = self._signature(self._serve_marginals)

    def _signature(self, fn):
        """A tf.function taking the inputs as named arguments: tokens, [pos, chunk], and
        [pack_ids] for a model whose encoder reads packs of sentences."""
        names = ("tokens",) + self.extra_inputs
        specs = [tf.TensorSpec([None, None], tf.string, name=name) for name in names]
        if self.pack_inputs:
            names += ("pack_ids",)
            specs.append(tf.TensorSpec([None], tf.int32, name="pack_ids"))
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
        if self.pack_inputs:
            ids["pack_id"] = inputs["pack_ids"]
        return ids

    def _outputs(self, tag_ids, lengths):
        mask = tf.sequence_mask(lengths, tf.shape(tag_ids)[1])
        tags = tf.where(mask, tf.gather(self.tag_strings, tag_ids), "")
        return {"tags": tags, "tag_ids": tag_ids, "lengths": lengths}

    def _serve(self, inputs):
        ids = self._features(inputs)
        potentials = self.model.serving_potentials(ids, self.fused_lstm)
        return self._outputs(self.model.decode_potentials(potentials, ids["length"]), ids["length"])

    def _serve_with_confidence(self, inputs):
        ids = self._features(inputs)
        potentials = self.model.serving_potentials(ids, self.fused_lstm)
        tag_ids = self.model.decode_potentials(potentials, ids["length"])
        marginals = self.model.marginals(potentials, ids["length"], self.fused_crf)
        token_confidence = tf.gather(marginals, tag_ids, batch_dims=2)
        out = self._outputs(tag_ids, ids["length"])
        out["token_confidence"] = token_confidence
        out["entity_confidence"] = self._entity_confidence(tag_ids, token_confidence, ids["length"])
        return out

    def _serve_marginals(self, inputs):
        ids = self._features(inputs)
        potentials = self.model.serving_potentials(ids, self.fused_lstm)
        return {
            "marginals": self.model.marginals(potentials, ids["length"], self.fused_crf),
            "lengths": ids["length"],
        }

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


def check_fused(
    configs: Sequence[Config], fused_lstm: ops.LstmProducts | None, fused_crf: bool
) -> None:
    """One-line errors for fused ops that the models cannot run."""
    if fused_lstm:
        others = sorted(
            {c.model.encoder for c in configs if not c.model.encoder.startswith("bilstm")}
        )
        if others:
            raise InputError(f"--fused-lstm needs a BiLSTM encoder, not {', '.join(others)}")
    if fused_crf and any(c.model.decoder != "crf" for c in configs):
        raise InputError("--fused-crf needs a model with a CRF")


def model_meta(
    model_dirs: Sequence[Path],
    configs: Sequence[Config],
    vocabs: dict[str, list[str]],
    info: dict,
    extra: tuple[str, ...],
    fused_lstm: ops.LstmProducts | None,
    fused_crf: bool,
) -> dict:
    """What a user (and tag-corpus) needs to know about the model, beside the graph. An
    ensemble's "config" is its first member's (members share data and document context)."""
    meta = {
        "config": json.loads(configs[0].to_json()),
        "preprocess": info,
        "inputs": ["tokens", *extra],
        "output_scheme": "IOB2",
        "input_scheme": info["input_scheme"],
        "tags": vocabs["tag"],  # the training scheme's tags: the columns of tag_marginals
        # etagger's own ops in the graph, which a loader must register
        "ops": [op for op, used in ((ops.LSTM_OP, fused_lstm), (ops.CRF_OP, fused_crf)) if used],
        # the precision of the fused LSTM's matrix products (their operands), if fused
        "lstm_products": fused_lstm,
    }
    if len(configs) > 1:
        meta["ensemble"] = [
            {"model_dir": str(d), "config": json.loads(c.to_json())}
            for d, c in zip(model_dirs, configs)
        ]
    return meta


def export(
    model_dirs: str | Path | Sequence[str | Path],
    out: str | Path,
    weights: str = "best",
    fused_lstm: ops.LstmProducts | None = None,
    fused_crf: bool = False,
) -> Path:
    """Writes the SavedModel of one model folder, or of the ensemble of several
    (etagger.ensemble), to ``out`` atomically (staging folder, then rename). ``fused_lstm``,
    ``fused_crf``: the BiLSTM (with its products in that precision), or the CRF marginals
    behind the confidences, run etagger's own one-kernel ops (``etagger.ops``), which whoever
    loads the model must load too."""
    model_dirs = as_dirs(model_dirs)
    model, configs, vocabs, info = load_tagger(model_dirs, weights)
    check_fused(configs, fused_lstm, fused_crf)
    extra = tuple(
        name for name in ("pos", "chunk") if any(getattr(c.model, f"use_{name}") for c in configs)
    )
    feature_config = features.FeatureConfig(**info["features"])
    module = ServingModule(
        model,
        vocabs,
        feature_config,
        info["tag_scheme"],
        extra,
        fused_lstm,
        fused_crf,
        pack_inputs=bool(configs[0].model.bert_pack_tokens),
    )
    module.__call__ = module.serve
    meta = model_meta(model_dirs, configs, vocabs, info, extra, fused_lstm, fused_crf)

    def save(folder: Path) -> None:
        tf.saved_model.save(
            module,
            str(folder),
            signatures={
                "serving_default": module.serve,
                "tag_with_confidence": module.serve_with_confidence,
                "tag_marginals": module.serve_marginals,
            },
        )
        with fsutil.atomic_write(folder.joinpath(*META_PATH)) as f:
            json.dump(meta, f, indent=2, sort_keys=True)

    return fsutil.atomic_folder(save, out)


def _table_entries(table) -> list[str]:
    """The keys of a restored StaticHashTable, in id order."""
    keys, ids = tf.raw_ops.LookupTableExportV2(
        table_handle=table.resource_handle, Tkeys=tf.string, Tvalues=tf.int64
    )
    return [k.decode("utf-8") for k in keys.numpy()[np.argsort(ids.numpy())]]


def rebuild_model_dir(exported: str | Path, data_dir: str | Path, model_dir: str | Path) -> Path:
    """The model folder (as ``cli.py train`` writes it) of an exported model, its weights
    taken from the SavedModel, so that the model can be exported again with the current
    serving graph without retraining. ``data_dir`` is the preprocess output it was trained
    on: its feature definitions and tag scheme are checked against the model's, its
    vocabularies against the lookup tables in the graph, and every variable by name and
    shape, so a rebuild from other data fails. Written atomically."""
    from etagger.config import Config
    from etagger.train import build_model, copy_data_files

    exported, data_dir = Path(exported), Path(data_dir)
    meta = read_meta(exported)
    if not (data_dir / "preprocess.json").exists():
        raise InputError(f"{data_dir}: not a preprocess output (no preprocess.json)")
    info = json.loads((data_dir / "preprocess.json").read_text())
    model_features = features.FeatureConfig(**meta["preprocess"]["features"])
    if features.FeatureConfig(**info["features"]) != model_features or any(
        info[key] != meta["preprocess"][key] for key in ("tag_scheme", "input_scheme")
    ):
        raise InputError(f"{data_dir}: other features or tag scheme than {exported} was trained on")
    vocabs = features.load_vocabs(data_dir / "vocab")
    loaded = load_exported(exported, meta)
    for name, table in loaded.extractor.tables.items():
        if _table_entries(table) != vocabs.get(name):
            raise InputError(f"{data_dir}: the {name} vocabulary is not the one {exported} uses")
    config = Config.from_dict(meta["config"])
    word_shape = np.load(data_dir / "glove_filtered.npy", mmap_mode="r").shape
    model = build_model(config, vocabs, info, word_shape)
    targets, sources = model.serving_variables(), loaded.model_variables

    def described(variables):  # without the numbers Keras gives its layers' names per process
        return [(re.sub(r"_\d+(?=[/:])", "", v.name), v.shape) for v in variables]

    if described(targets) != described(sources):
        raise InputError(f"{exported}: its variables are not those its config builds")
    for target, source in zip(targets, sources):
        target.assign(source)

    def save(folder: Path) -> None:
        config.save(folder / "config.json")
        copy_data_files(data_dir, folder)
        tf.train.Checkpoint(model=model).write(str(folder / "best" / "ckpt"))

    return fsutil.atomic_folder(save, model_dir)
