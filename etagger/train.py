"""Training: Adam with warm-up and exponential decay, gradient clipping, optional weight
averaging, early stopping on dev entity F1, best checkpoint kept, TensorBoard summaries,
resume from the last epoch; optionally distilling a teacher's soft targets (silver data).

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
from etagger.stored_vectors import ContextualSpec

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
    and what ``data_info`` (the data's preprocess.json) says preprocessing stored for this
    model's frozen BERT encoder: its "contextual" vectors (same fingerprint), else the
    "wordpiece_ids" of its vocabulary."""
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
    if m.reads_words:
        names += ("word",)
    spec = ContextualSpec.of_model(m)
    stored = (data_info or {}).get("contextual_fingerprint")
    if spec is not None and spec.pack_tokens and stored != spec.fingerprint():
        # The in-graph encoder of a training or evaluation batch sees one sentence, not a pack.
        raise ValueError(
            f"a model with bert_pack_tokens {spec.pack_tokens} reads the vectors that "
            f"`preprocess --contextual {m.bert_handle} --contextual-pack-tokens "
            f"{spec.pack_tokens}` stores, with its pooling and layers: this data has "
            + ("other vectors" if stored else "none")
        )
    if spec is not None and stored and not m.document_context:
        if stored == spec.fingerprint():
            return names + ("contextual",)
        log.warning(
            "the data's contextual vectors come from another encoder or pooling than %s: "
            "computing them in-graph",
            m.bert_handle,
        )
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


def copy_data_files(data_dir: Path, model_dir: Path) -> None:
    """The preprocess output's files that a model folder keeps beside its weights."""
    for name in ("preprocess.json", "glove_filtered.npy"):
        shutil.copy2(data_dir / name, model_dir / name)
    shutil.copytree(data_dir / "vocab", model_dir / "vocab", dirs_exist_ok=True)


def _prepare_model_dir(data_dir: Path, config: Config, model_dir: Path) -> None:
    """Refuses a model folder of another configuration; saves the config and data files."""
    model_dir.mkdir(parents=True, exist_ok=True)
    saved = model_dir / "config.json"
    if saved.exists() and Config.load(saved).model != config.model:
        raise ValueError(
            f"{model_dir} holds a model with another configuration; choose a new --model-dir"
        )
    config.save(saved)
    copy_data_files(data_dir, model_dir)


class _Run:
    """What one training run carries from epoch to epoch: the model, its optimizer and
    weight average, the counters that early stopping reads, the checkpoints and the
    history. A run in a model folder that holds a last checkpoint resumes from it."""

    def __init__(self, model: Tagger, config: Config, model_dir: Path):
        tc = config.train
        self.model, self.model_dir, self.tc = model, model_dir, tc
        self.schedule = WarmupExponentialDecay(
            tc.learning_rate, tc.warmup_steps, tc.decay_rate, tc.decay_steps
        )
        self.optimizer = keras.optimizers.Adam(self.schedule)
        # Its slots exist before the first step: a step that creates variables is traced twice.
        self.optimizer.build(model.trainable_variables)
        self.average = (
            WeightAverage(model.trainable_variables, tc.ema_decay) if tc.ema_decay else None
        )
        self.epoch = tf.Variable(0, dtype=tf.int64, name="epoch")
        self.best_f1 = tf.Variable(-1.0, dtype=tf.float64, name="best_f1")
        self.stale = tf.Variable(0, dtype=tf.int64, name="epochs_without_improvement")
        state = dict(
            model=model,
            optimizer=self.optimizer,
            epoch=self.epoch,
            best_f1=self.best_f1,
            stale=self.stale,
        )
        if self.average is not None:
            state["average"] = self.average
        self.last = tf.train.CheckpointManager(
            tf.train.Checkpoint(**state), model_dir / "last", max_to_keep=1
        )
        self.best = tf.train.Checkpoint(model=model)
        self.writer = tf.summary.create_file_writer(str(model_dir / "logs"))
        self.history_path = model_dir / "history.json"
        self.history: list[dict] = []
        if self.last.latest_checkpoint:
            self.last.checkpoint.restore(self.last.latest_checkpoint)
            log.info("resumed from %s at epoch %d", self.last.latest_checkpoint, int(self.epoch))
            if self.history_path.exists():
                self.history = json.loads(self.history_path.read_text())

    def going_on(self) -> bool:
        """Whether another epoch runs: epochs left, and dev F1 improved within ``patience``."""
        return int(self.epoch) < self.tc.epochs and int(self.stale) < self.tc.patience

    def step(self, batch: dict | tuple[dict, dict]) -> tuple[tf.Tensor, tf.Tensor]:
        """One optimizer step on a gold batch, or on a (gold, silver) pair of batches when
        distilling: (loss, gradient norm before clipping)."""
        model = self.model
        gold, silver = batch if isinstance(batch, tuple) else (batch, None)
        weight = self.tc.distill_weight
        with tf.GradientTape() as tape:
            if silver is None:
                loss = model.loss(gold, gold["tag_id"], training=True)
            else:
                loss = weight * model.distillation_loss(silver, silver["soft_tags"])
                if weight < 1.0:
                    loss += (1.0 - weight) * model.loss(gold, gold["tag_id"], training=True)
        grads = tape.gradient(loss, model.trainable_variables)
        grads, norm = tf.clip_by_global_norm(grads, self.tc.clip_norm)
        self.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        if self.average is not None:
            self.average.update()
        return loss, norm

    def keep_if_best(self, dev_ds: tf.data.Dataset, tags: list[str], info: dict) -> tuple:
        """Scores dev (with the averaged weights, when averaging) and writes the best
        checkpoint when it improved; returns (report, improved)."""
        swapped = self.average.swapped_in() if self.average is not None else None
        with swapped or contextlib.nullcontext():
            report = score(
                predict(self.model, dev_ds, tags), info["tag_scheme"], info["input_scheme"]
            )
            improved = report.f1 > float(self.best_f1) or not self.tc.selects_on_dev
            if improved:
                self.best.write(str(self.model_dir / "best" / "ckpt"))
        self.epoch.assign_add(1)
        if improved:
            self.best_f1.assign(report.f1)
            self.stale.assign(0)
        else:
            self.stale.assign_add(1)
        return report, improved

    def record(self, row: dict) -> None:
        """The epoch's figures into history.json and TensorBoard; then the last checkpoint."""
        self.history.append(row)
        with self.writer.as_default(step=int(self.epoch)):
            for key in ("loss", "dev_entity_f1", "dev_token_f1", "tokens_per_second"):
                tf.summary.scalar(key, row[key])
            tf.summary.scalar("learning_rate", row["learning_rate"])
        self.last.save()
        with fsutil.atomic_write(self.history_path) as f:
            json.dump(self.history, f, indent=1)


def silver_dataset(data_dir: Path, config: Config, document_context: int) -> tf.data.Dataset:
    """Endless shuffled batches of the silver sentences (those with "soft_tags") of
    ``train.silver_splits`` of ``train.silver_data``, whose vocabularies must be the training
    data's."""
    tc = config.train
    silver = Path(str(tc.silver_data))
    if document_context:
        raise ValueError("distillation does not support document_context models yet")
    if features.load_vocabs(silver / "vocab") != features.load_vocabs(data_dir / "vocab"):
        raise ValueError(f"silver data {silver} has other vocabularies than {data_dir}")
    info = data.load_preprocess_info(silver)
    if not info.get("soft_target_splits"):
        raise ValueError(f"silver data {silver} has no soft targets (preprocess --soft-targets)")
    return data.make_dataset(
        silver,
        tc.silver_splits,
        tc.batch_size,
        input_names(config, info) + ("soft_tags",),
        shuffle=True,
        seed=tc.seed + 1,
        document_context=document_context,
        needs=("soft_tags",),
    ).repeat()


def train_epoch(train_step, train_ds: tf.data.Dataset, progress: bool) -> tuple[float, int, float]:
    """One pass of ``train_step`` (batch -> (loss, anything)) over the training data, with a
    progress bar on a terminal: (mean loss, tokens, seconds)."""
    t0 = time.time()
    bar = keras.utils.Progbar(
        None, stateful_metrics=["tokens/s"], verbose=1 if progress and sys.stdout.isatty() else 0
    )
    tokens, losses = 0, []
    for i, batch in enumerate(train_ds, start=1):
        loss, _ = train_step(batch)
        losses.append(float(loss))
        for part in batch if isinstance(batch, tuple) else (batch,):
            tokens += int(tf.reduce_sum(part["length"]))
        bar.update(i, [("loss", float(loss)), ("tokens/s", tokens / (time.time() - t0))])
    return float(np.mean(losses)), tokens, time.time() - t0


def train(
    data_dir: str | Path, config: Config, model_dir: str | Path, progress: bool = True
) -> dict:
    """Trains (or resumes) a model; returns the best dev figures."""
    data_dir, model_dir = Path(data_dir), Path(model_dir)
    _prepare_model_dir(data_dir, config, model_dir)
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
    if tc.silver_data is not None:
        train_ds = tf.data.Dataset.zip((train_ds, silver_dataset(data_dir, config, context)))
    dev_ds = data.make_dataset(
        data_dir, "dev", 64, names + ("word", "tag"), document_context=context
    )
    run = _Run(model, config, model_dir)
    train_step = data.batch_function(run.step, train_ds)
    # elapsed_seconds runs on across resumes, so it is the run's training time in all.
    started = time.time() - (run.history[-1]["elapsed_seconds"] if run.history else 0.0)
    while run.going_on():
        loss, tokens, seconds = train_epoch(train_step, train_ds, progress)
        report, improved = run.keep_if_best(dev_ds, vocabs["tag"], info)
        row = {
            "epoch": int(run.epoch),
            "loss": loss,
            "dev_entity_f1": report.f1,
            "dev_token_f1": report.token_f1,
            "train_seconds": round(seconds, 1),
            "tokens_per_second": round(tokens / seconds),
            "elapsed_seconds": round(time.time() - started, 1),
            "learning_rate": float(run.schedule(run.optimizer.iterations)),
            "best": improved,
        }
        run.record(row)
        log.info("epoch %d: %s", int(run.epoch), row)
        if progress:
            print(json.dumps(row), flush=True)
    history = run.history
    best_row = max(history, key=lambda r: r["dev_entity_f1"]) if tc.selects_on_dev else history[-1]
    return {
        "best_epoch": best_row["epoch"],
        "dev_entity_f1": best_row["dev_entity_f1"],
        "epochs_run": len(history),
    }
