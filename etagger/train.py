"""Training: Adam with warm-up and exponential decay, gradient clipping, optional weight
averaging, early stopping on dev entity F1, best checkpoint kept, TensorBoard summaries,
resume from the last epoch.

A model folder holds everything needed to evaluate, export and tag with it:
  config.json  preprocess.json  vocab/  glove_filtered.npy (initial vectors, for rebuilding)
  best/        weights of the best dev epoch, or of the last with train_split "train+dev"
               (averaged with ema_decay)
  last/        checkpoint to resume from
  history.json per-epoch figures
  logs/        TensorBoard
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from etagger import data, features, fsutil, metrics, packing, tagschemes
from etagger.averaging import WeightAverage
from etagger.config import Config
from etagger.model import Tagger

log = logging.getLogger(__name__)


class WarmupExponentialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, ``peak * (step + 1) / warmup_steps``, then exponential decay from the
    end of warm-up, ``peak * decay_rate ** ((step - warmup_steps) / decay_steps)``."""

    def __init__(self, peak: float, warmup_steps: int, decay_rate: float, decay_steps: int):
        self.peak, self.warmup_steps = peak, warmup_steps
        self.decay_rate, self.decay_steps = decay_rate, decay_steps

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = self.peak * (step + 1.0) / max(self.warmup_steps, 1)
        decayed = self.peak * tf.pow(self.decay_rate, (step - self.warmup_steps) / self.decay_steps)
        return tf.where(step < self.warmup_steps, warmup, decayed)

    def get_config(self):
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "decay_rate": self.decay_rate,
            "decay_steps": self.decay_steps,
        }


def input_names(config: Config, data_info: dict | None = None) -> tuple[str, ...]:
    """The features this model reads: ids, the "word" strings with BERT or ELMo features,
    and the stored "wordpiece_ids" when ``data_info`` (the data's preprocess.json) says they
    come from this model's BERT vocabulary."""
    m = config.model
    names = ("word_id", "char_ids") + tuple(
        f"{n}_id"
        for n, use in (
            ("shape", m.use_shape),
            ("pos", m.use_pos),
            ("chunk", m.use_chunk),
            ("gazetteer", m.use_gazetteer),
        )
        if use
    )
    if m.bert_handle is not None or m.elmo_handle is not None:
        names += ("word",)
    if m.bert_handle is not None and data_info and data_info.get("bert_vocab_sha256"):
        from etagger.layers.contextual import vocab_sha256

        if data_info["bert_vocab_sha256"] == vocab_sha256(m.bert_handle):
            names += ("wordpiece_ids",)
        else:
            log.warning(
                "the data's wordpieces come from another vocabulary than %s: tokenizing in-graph",
                m.bert_handle,
            )
    return names


def load_model(model_dir: str | Path, weights: str = "best") -> tuple[Tagger, Config, dict, dict]:
    """(model with the ``weights`` checkpoint restored, config, vocabs, preprocess info)."""
    model_dir = Path(model_dir)
    config = Config.load(model_dir / "config.json")
    vocabs = features.load_vocabs(model_dir / "vocab")
    info = json.loads((model_dir / "preprocess.json").read_text())
    word_shape = np.load(
        model_dir / "glove_filtered.npy", mmap_mode="r"
    ).shape  # weights come from the checkpoint
    model = build_model(config, vocabs, info, word_shape)
    status = tf.train.Checkpoint(model=model).read(str(model_dir / weights / "ckpt"))
    status.expect_partial()
    return model, config, vocabs, info


def build_model(
    config: Config, vocabs: dict, info: dict, word_vectors: np.ndarray | tuple[int, int]
) -> Tagger:
    model = Tagger(
        config.model, features.vocab_sizes(vocabs), vocabs["tag"], info["tag_scheme"], word_vectors
    )
    # Build the variables with a dummy batch so checkpoints can be restored into them.
    dummy = {
        "word_id": tf.zeros([1, 1], tf.int64),
        "char_ids": tf.zeros([1, 1, 1], tf.int64),
        "length": tf.ones([1], tf.int32),
        "shape_id": tf.zeros([1, 1], tf.int64),
        "pos_id": tf.zeros([1, 1], tf.int64),
        "chunk_id": tf.zeros([1, 1], tf.int64),
        "gazetteer_id": tf.zeros([1, 1], tf.int64),
    }
    if model.reads_words:
        dummy["word"] = tf.constant([["."]])
    model(dummy)
    return model


def predict(model: Tagger, dataset: tf.data.Dataset, tags: list[str]) -> list[dict]:
    """Decodes every batch; returns per sentence the string columns and "pred" tags (in
    the training scheme), in dataset order."""
    # One traced decode per model and dataset structure, reused across calls (e.g. every epoch).
    # Kept in __dict__ so Keras does not wrap the dict as a tracked structure of the model.
    traced = model.__dict__.setdefault("_decode_fns", {})
    key = repr(dataset.element_spec)
    if key not in traced:
        traced[key] = data.batch_function(model.decode, dataset)
    decode = traced[key]
    out = []
    for batch in dataset:
        pred = decode(batch).numpy()
        lengths = batch["length"].numpy()
        # Columns absent from the input (e.g. POS for raw text) arrive as [B, 0].
        strings = {
            k: batch[k].numpy() for k in data.STRING_FEATURES if k in batch and batch[k].shape[1]
        }
        for i, n in enumerate(lengths):
            row: dict[str, Any] = {
                k: [v.decode("utf-8") for v in col[i, :n]] for k, col in strings.items()
            }
            row["pred"] = [tags[t] for t in pred[i, :n]]
            for k in ("source", "index", "leading"):
                if k in batch:
                    value = batch[k][i].numpy()
                    row[k] = value.decode("utf-8") if isinstance(value, bytes) else int(value)
            if "sentence_lengths" in batch:  # a pack of document sentences: split it back
                out.extend(_unpack(row, batch["sentence_lengths"][i].numpy()))
            else:
                out.append(row)
    return out


def _unpack(row: dict, sentence_lengths) -> list[dict]:
    """The rows of the sentences of a document pack (``packing.pack_documents``), numbered on
    from the pack's first "index"."""
    columns = {key: value for key, value in row.items() if isinstance(value, list)}
    rows = packing.split_pack(columns, [int(n) for n in sentence_lengths if n])
    if "index" in row:
        for k, sentence in enumerate(rows):
            sentence["index"] = row["index"] + k
    return rows


def score(rows: list[dict], train_scheme: str, input_scheme: str) -> metrics.Report:
    """conlleval figures of predicted rows against their gold "tag" column (input scheme)."""
    gold = [r["tag"] for r in rows]
    pred = [tagschemes.convert_tags(r["pred"], train_scheme, input_scheme) for r in rows]
    return metrics.evaluate(gold, pred)


def _copy_data_files(data_dir: Path, model_dir: Path) -> None:
    for name in ("preprocess.json", "glove_filtered.npy"):
        shutil.copy2(data_dir / name, model_dir / name)
    shutil.copytree(data_dir / "vocab", model_dir / "vocab", dirs_exist_ok=True)


def train(
    data_dir: str | Path, config: Config, model_dir: str | Path, progress: bool = True
) -> dict:
    """Trains (or resumes) a model; returns the best dev figures."""
    data_dir, model_dir = Path(data_dir), Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    if (model_dir / "config.json").exists() and Config.load(
        model_dir / "config.json"
    ).model != config.model:
        raise ValueError(
            f"{model_dir} holds a model with another configuration; choose a new --model-dir"
        )
    config.save(model_dir / "config.json")
    _copy_data_files(data_dir, model_dir)
    tc = config.train
    keras.utils.set_random_seed(tc.seed)

    vocabs = features.load_vocabs(data_dir / "vocab")
    info = data.load_preprocess_info(data_dir)
    model = build_model(config, vocabs, info, np.load(data_dir / "glove_filtered.npy"))
    names = input_names(config, info)
    context = config.model.document_context
    train_ds = data.make_dataset(
        data_dir,
        tc.train_split,
        tc.batch_size,
        names + ("tag_id",),
        shuffle=True,
        seed=tc.seed,
        document_context=context,
    )
    dev_ds = data.make_dataset(
        data_dir, "dev", 64, names + ("word", "tag"), document_context=context
    )
    schedule = WarmupExponentialDecay(
        tc.learning_rate, tc.warmup_steps, tc.decay_rate, tc.decay_steps
    )
    optimizer = keras.optimizers.Adam(schedule)
    # Its slots exist before the first step: a step that creates variables is traced twice.
    optimizer.build(model.trainable_variables)
    average = WeightAverage(model.trainable_variables, tc.ema_decay) if tc.ema_decay else None

    epoch = tf.Variable(0, dtype=tf.int64, name="epoch")
    best_f1 = tf.Variable(-1.0, dtype=tf.float64, name="best_f1")
    stale = tf.Variable(0, dtype=tf.int64, name="epochs_without_improvement")
    state = dict(model=model, optimizer=optimizer, epoch=epoch, best_f1=best_f1, stale=stale)
    if average is not None:
        state["average"] = average
    last = tf.train.CheckpointManager(
        tf.train.Checkpoint(**state), model_dir / "last", max_to_keep=1
    )
    if last.latest_checkpoint:
        last.checkpoint.restore(last.latest_checkpoint)
        log.info("resumed from %s at epoch %d", last.latest_checkpoint, int(epoch))
    best = tf.train.Checkpoint(model=model)
    writer = tf.summary.create_file_writer(str(model_dir / "logs"))
    history_path = model_dir / "history.json"
    history = (
        json.loads(history_path.read_text())
        if history_path.exists() and last.latest_checkpoint
        else []
    )

    def step(batch):
        with tf.GradientTape() as tape:
            loss = model.loss(batch, batch["tag_id"], training=True)
        grads = tape.gradient(loss, model.trainable_variables)
        grads, norm = tf.clip_by_global_norm(grads, tc.clip_norm)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        if average is not None:
            average.update()
        return loss, norm

    train_step = data.batch_function(step, train_ds)

    # elapsed_seconds runs on across resumes, so it is the run's training time in all.
    started = time.time() - (history[-1]["elapsed_seconds"] if history else 0.0)
    while int(epoch) < tc.epochs and int(stale) < tc.patience:
        t0 = time.time()
        bar = keras.utils.Progbar(
            None,
            stateful_metrics=["tokens/s"],
            verbose=1 if progress and sys.stdout.isatty() else 0,
        )
        tokens, losses = 0, []
        for i, batch in enumerate(train_ds, start=1):
            loss, _ = train_step(batch)
            losses.append(float(loss))
            tokens += int(tf.reduce_sum(batch["length"]))
            bar.update(i, [("loss", float(loss)), ("tokens/s", tokens / (time.time() - t0))])
        train_seconds = time.time() - t0
        # With weight averaging, dev is scored and the best checkpoint saved with the averages.
        with average.swapped_in() if average is not None else contextlib.nullcontext():
            report = score(
                predict(model, dev_ds, vocabs["tag"]), info["tag_scheme"], info["input_scheme"]
            )
            improved = report.f1 > float(best_f1) or not tc.selects_on_dev
            if improved:
                best.write(str(model_dir / "best" / "ckpt"))
        epoch.assign_add(1)
        if improved:
            best_f1.assign(report.f1)
            stale.assign(0)
        else:
            stale.assign_add(1)
        row = {
            "epoch": int(epoch),
            "loss": float(np.mean(losses)),
            "dev_entity_f1": report.f1,
            "dev_token_f1": report.token_f1,
            "train_seconds": round(train_seconds, 1),
            "tokens_per_second": round(tokens / train_seconds),
            "elapsed_seconds": round(time.time() - started, 1),
            "learning_rate": float(schedule(optimizer.iterations)),
            "best": improved,
        }
        history.append(row)
        with writer.as_default(step=int(epoch)):
            for key in (
                "loss",
                "dev_entity_f1",
                "dev_token_f1",
                "tokens_per_second",
                "learning_rate",
            ):
                tf.summary.scalar(key, row[key])
        last.save()
        with fsutil.atomic_write(history_path) as f:
            json.dump(history, f, indent=1)
        log.info("epoch %d: %s", int(epoch), row)
        if progress:
            print(json.dumps(row), flush=True)
    best_row = max(history, key=lambda r: r["dev_entity_f1"]) if tc.selects_on_dev else history[-1]
    return {
        "best_epoch": best_row["epoch"],
        "dev_entity_f1": best_row["dev_entity_f1"],
        "epochs_run": len(history),
    }
