"""Reading preprocessed TFRecord shards back: per-sentence dicts of Python/NumPy values, and
``conll.Sentence`` objects that ``conll.write_conll`` turns back into the input file."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from etagger import conll, schema

SORT_KEYS = ("source", "index")


def shard_paths(data_dir: str | Path, split: str) -> list[Path]:
    """The shards of ``split``, in shard order; "train+dev" (as in TFDS) names the shards of
    both splits. FileNotFoundError when a split has none."""
    paths = []
    for part in split.split("+"):
        found = sorted(Path(data_dir).glob(f"{part}-*-of-*.tfrecord"))
        if not found:
            raise FileNotFoundError(
                f"no {part} shards in {data_dir} (run `cli.py preprocess` first)"
            )
        paths += found
    return paths


BATCH = 256  # records parsed per tf.data step: per-element iteration costs ~0.7 ms a record


def _rows(value) -> list:
    """A batched (possibly ragged) tensor -> one Python value per record: str / int for
    context scalars, list[str] for string sequences, int64 arrays for id sequences and a
    list of int64 arrays for the ragged char_ids."""
    flat = value.flat_values.numpy() if isinstance(value, tf.RaggedTensor) else value.numpy()
    if flat.dtype == object:
        flat = [v.decode("utf-8") for v in flat.tolist()]
    if not isinstance(value, tf.RaggedTensor):
        return flat if isinstance(flat, list) else flat.tolist() if flat.ndim == 1 else list(flat)
    for splits in reversed(value.nested_row_splits):
        bounds = splits.numpy().tolist()
        flat = [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    return flat


def _read_shard(path: Path, names: set[str] | None) -> Iterator[dict]:
    wanted = None if names is None else set(names) | set(SORT_KEYS) | {"length"}
    optional = {n for n, spec in schema.load_schema()["sequence"].items() if not spec["required"]}
    decode = tf.autograph.experimental.do_not_convert(lambda s: schema.decode(s, wanted))
    dataset = tf.data.TFRecordDataset(str(path)).map(decode).ragged_batch(BATCH)
    for batch in dataset:
        columns = {name: _rows(value) for name, value in batch.items()}
        for i in range(len(columns["index"])):
            record = {name: rows[i] for name, rows in columns.items()}
            # An optional sequence feature absent from a record parses as []; leave it out.
            yield {
                name: value
                for name, value in record.items()
                if not (name in optional and len(value) == 0 and record["length"])
            }


def read_records(
    data_dir: str | Path, split: str, names: Iterable[str] | None = None
) -> Iterator[dict]:
    """Yields one dict per sentence of ``split``, decoded with ``schema.decode``.

    Shards are read in order; every shard is sorted by (source, index), so merging them
    yields all records sorted by (source, index), i.e. in input-file order. ``names``
    restricts the features returned (the sort keys are read in any case but only returned
    when asked for).
    """
    names = None if names is None else set(names)
    shards = [_read_shard(path, names) for path in shard_paths(data_dir, split)]
    for record in heapq.merge(*shards, key=lambda r: (r["source"], r["index"])):
        if names is not None:
            record = {k: v for k, v in record.items() if k in names}
        yield record


def to_sentences(records: Iterable[dict], columns: Sequence[str]) -> Iterator[conll.Sentence]:
    """Rebuilds ``conll.Sentence`` objects (columns, index, source, leading, offsets) from
    records, so that ``conll.write_conll(path, to_sentences(read_records(...), columns))``
    reproduces the preprocessed input file byte for byte."""
    for record in records:
        offsets: tuple[tuple[int, int], ...] = ()
        if "start" in record and len(record["start"]):
            offsets = tuple(
                zip(np.asarray(record["start"]).tolist(), np.asarray(record["end"]).tolist())
            )
        yield conll.Sentence(
            columns={name: tuple(record[name]) for name in columns},
            index=record["index"],
            source=record.get("source", ""),
            leading=record.get("leading", ""),
            offsets=offsets,
        )
