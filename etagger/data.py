"""tf.data input: preprocessed TFRecord shards -> padded, length-bucketed batches."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import tensorflow as tf

from etagger import packing, records, schema

# Features the model reads; "length" is derived. Strings ride along for evaluation output.
ID_FEATURES = ("word_id", "char_ids", "shape_id", "pos_id", "chunk_id")
STRING_FEATURES = ("word", "pos", "chunk", "tag")
BUCKET_BOUNDARIES = (8, 12, 16, 20, 25, 30, 40, 50, 64)


def load_preprocess_info(data_dir: str | Path) -> dict:
    """OUT/preprocess.json of a preprocess run."""
    return json.loads((Path(data_dir) / "preprocess.json").read_text())


def batch_function(fn, dataset: tf.data.Dataset):
    """``fn(batch)`` as a tf.function traced once for all of ``dataset``'s batches: its input
    signature is the dataset's element_spec, whose batch and length dimensions are None.
    (A plain tf.function traces the first batch's shapes, then again with relaxed shapes, and
    again whenever another dimension first varies; one trace of a training step takes seconds.)"""
    return tf.function(fn, input_signature=[dataset.element_spec])


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


def parsed_records(data_dir: str | Path, split: str, names: Iterable[str]) -> tf.data.Dataset:
    """The records of ``split``'s shards (``records.shard_paths``), in shard order, parsed by
    ``parse_fn(names)``."""
    files = [str(path) for path in records.shard_paths(data_dir, split)]
    ds = tf.data.TFRecordDataset(files, num_parallel_reads=1)
    return ds.map(parse_fn(names), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _padding_values(element_spec: dict) -> dict:
    return {
        name: tf.constant(b"" if spec.dtype == tf.string else 0, spec.dtype)
        for name, spec in element_spec.items()
    }


def _document_dataset(
    data_dir: str | Path, split: str, names: set[str], pack_tokens: int
) -> tf.data.Dataset:
    """One element per pack of ``packing.pack_documents``: the requested sequence features of its
    sentences concatenated (char_ids padded to the pack's longest word), "length" its token
    count, "sentence_lengths" [S] and "index" the index of its first sentence."""
    spec = schema.load_schema()["sequence"]
    names = names & set(spec)
    sentences = records.read_records(
        data_dir, split, names | {"leading", "source", "index", "length"}
    )
    # Records come sorted by (source, index): grouping by source gives each file's sentences in
    # order.
    packs = [
        pack
        for _, in_file in itertools.groupby(sentences, key=lambda s: s["source"])
        for pack in packing.pack_documents(
            in_file,
            pack_tokens,
            lambda s: s["length"],
            lambda s: packing.starts_pack(s["index"], s["leading"]),
        )
    ]
    in_order = [s for pack in packs for s in pack]
    pack_lengths = [sum(s["length"] for s in pack) for pack in packs]
    elements = {
        "length": tf.constant(pack_lengths, tf.int32),
        "index": tf.constant([pack[0]["index"] for pack in packs], tf.int64),
        "sentence_lengths": tf.RaggedTensor.from_row_lengths(
            tf.constant([s["length"] for s in in_order], tf.int32), [len(pack) for pack in packs]
        ),
    }
    for name in names:
        tokens = [token for s in in_order for token in s[name]]
        if spec[name].get("ragged"):  # per token a list of ids: [packs, (tokens), (ids)]
            flat = np.concatenate(
                [np.asarray(t, np.int64) for t in tokens] + [np.zeros(0, np.int64)]
            )
            values = tf.RaggedTensor.from_row_lengths(flat, [len(t) for t in tokens])
        else:
            values = tf.constant(tokens, tf.string if spec[name]["dtype"] == "string" else tf.int64)
        elements[name] = tf.RaggedTensor.from_row_lengths(values, pack_lengths)
    ds = tf.data.Dataset.from_tensor_slices(elements)
    return ds.map(
        lambda r: {k: v.to_tensor() if isinstance(v, tf.RaggedTensor) else v for k, v in r.items()}
    )


def _has(name: str):
    """A predicate: whether a parsed record carries the optional float16 feature ``name``
    (one that is absent decodes to [0, 0])."""

    def has(record):
        return tf.shape(record[name], out_type=tf.int32)[0] == record["length"]

    return has


def make_dataset(
    data_dir: str | Path,
    split: str,
    batch_size: int,
    names: Iterable[str] = ID_FEATURES + ("tag_id",),
    shuffle: bool = False,
    seed: int = 0,
    bucket: bool = True,
    cache: bool = True,
    document_context: int = 0,
    needs: tuple[str, ...] = (),
) -> tf.data.Dataset:
    """Batches of dicts: every requested feature padded to [B, T] ([B, T, C] for char_ids),
    plus "length" [B]. Padding ids are 0 (PAD) and padding strings are "".

    With ``bucket`` sentences of similar length share a batch (less padding, faster steps);
    ``shuffle`` reshuffles every epoch with a fixed ``seed``. Without shuffle, batches come
    in a fixed order (by shard, then sentence index).

    With ``document_context`` > 0 an element is a pack of consecutive sentences of one
    document of at most that many tokens (``packing.pack_documents``), with "sentence_lengths"
    [B, S] (0-padded) telling where its sentences end and "index" its first sentence's index.

    ``needs``: optional float16 sequence features (e.g. "soft_tags") that a record must carry
    to be kept; records without them are left out.
    """
    names = tuple(names) + tuple(needs)
    if document_context:
        ds = _document_dataset(data_dir, split, set(names) | {"word_id"}, document_context)
    else:
        ds = parsed_records(data_dir, split, names)
    for name in needs:
        ds = ds.filter(_has(name))
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(20000, seed=seed, reshuffle_each_iteration=True)
    padding = _padding_values(ds.element_spec)
    if bucket:
        boundaries = list(BUCKET_BOUNDARIES) + list(
            range(BUCKET_BOUNDARIES[-1] + 16, document_context + 1, 16)
        )
        ds = ds.bucket_by_sequence_length(
            lambda r: r["length"],
            bucket_boundaries=boundaries,
            bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
            padding_values=padding,
            pad_to_bucket_boundary=False,
        )
        if shuffle:
            # Buckets fill at different rates; shuffle batches too so an epoch does not end
            # with a run of long sentences.
            ds = ds.shuffle(64, seed=seed + 1, reshuffle_each_iteration=True)
    else:
        ds = ds.padded_batch(batch_size, padding_values=padding)
    return ds.prefetch(tf.data.AUTOTUNE)
