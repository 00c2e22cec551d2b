"""tf.data input: preprocessed TFRecord shards -> padded, length-bucketed batches."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import tensorflow as tf

from etagger import schema

# Features the model reads; "length" is derived. Strings ride along for evaluation output.
ID_FEATURES = ("word_id", "char_ids", "shape_id", "pos_id", "chunk_id")
STRING_FEATURES = ("word", "pos", "chunk", "tag")
BUCKET_BOUNDARIES = (8, 12, 16, 20, 25, 30, 40, 50, 64)


def shard_files(data_dir: str | Path, split: str) -> list[str]:
    files = sorted(str(p) for p in Path(data_dir).glob(f"{split}-*-of-*.tfrecord"))
    if not files:
        raise FileNotFoundError(f"no {split} shards in {data_dir} (run `cli.py preprocess` first)")
    return files


def load_preprocess_info(data_dir: str | Path) -> dict:
    """OUT/preprocess.json of a preprocess run."""
    return json.loads((Path(data_dir) / "preprocess.json").read_text())


def parse_fn(names: Iterable[str]):
    """A function serialized record -> dict with the requested features, the ragged ones
    (char_ids, wordpiece_ids) densified to [T, C] with 0 padding, and "length" [] added."""
    names = set(names) | {"word_id", "length"}

    def parse(serialized):
        record = schema.decode(serialized, names)
        for name, value in record.items():
            if isinstance(value, tf.RaggedTensor):
                record[name] = value.to_tensor()
        record["length"] = tf.cast(record["length"], tf.int32)
        return record

    return parse


def _padding_values(element_spec: dict) -> dict:
    return {name: tf.constant(b"" if spec.dtype == tf.string else 0, spec.dtype)
            for name, spec in element_spec.items()}


def make_dataset(data_dir: str | Path, split: str, batch_size: int, names: Iterable[str] = ID_FEATURES + ("tag_id",),
                 shuffle: bool = False, seed: int = 0, bucket: bool = True, cache: bool = True) -> tf.data.Dataset:
    """Batches of dicts: every requested feature padded to [B, T] ([B, T, C] for char_ids),
    plus "length" [B]. Padding ids are 0 (PAD) and padding strings are "".

    With ``bucket`` sentences of similar length share a batch (less padding, faster steps);
    ``shuffle`` reshuffles every epoch with a fixed ``seed``. Without shuffle, batches come
    in a fixed order (by shard, then sentence index).
    """
    files = shard_files(data_dir, split)
    ds = tf.data.TFRecordDataset(files, num_parallel_reads=1)
    ds = ds.map(parse_fn(names), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(20000, seed=seed, reshuffle_each_iteration=True)
    padding = _padding_values(ds.element_spec)
    if bucket:
        boundaries = list(BUCKET_BOUNDARIES)
        ds = ds.bucket_by_sequence_length(
            lambda r: r["length"], bucket_boundaries=boundaries,
            bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
            padding_values=padding, pad_to_bucket_boundary=False)
        if shuffle:
            # Buckets fill at different rates; shuffle batches too so an epoch does not end
            # with a run of long sentences.
            ds = ds.shuffle(64, seed=seed + 1, reshuffle_each_iteration=True)
    else:
        ds = ds.padded_batch(batch_size, padding_values=padding)
    return ds.prefetch(tf.data.AUTOTUNE)
