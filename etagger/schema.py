"""The TFRecord layout in ``schemas/sequence_example.json``: encoding sentences to
tf.train.SequenceExample and the tf.io parsing spec that reads them back."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "sequence_example.json"
# How each dtype is parsed: a float16 feature is a bytes value per token (its vector).
_DTYPES = {"string": tf.string, "int64": tf.int64, "float16": tf.string}


@functools.cache
def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def _feature(dtype: str, values) -> tf.train.Feature:
    if dtype == "float16":  # one vector: its little-endian float16 bytes
        return tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[np.asarray(v, "<f2").tobytes() for v in values])
        )
    if dtype == "string":
        return tf.train.Feature(
            bytes_list=tf.train.BytesList(
                value=[v.encode("utf-8") if isinstance(v, str) else v for v in values]
            )
        )
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def encode(context: Mapping[str, Any], sequence: Mapping[str, Any]) -> bytes:
    """A serialized SequenceExample; raises ValueError when a value breaks the schema.

    ``context`` maps names to scalars; ``sequence`` maps names to per-token lists (for
    ragged features, per-token lists of ids; for float16 features, per-token vectors, or
    one [T, D] array). Serialization is deterministic, so the same
    sentence always gives the same bytes.
    """
    schema = load_schema()
    length = int(context["length"])
    for part, given in (("context", context), ("sequence", sequence)):
        unknown = set(given) - set(schema[part])
        missing = {k for k, v in schema[part].items() if v["required"]} - set(given)
        if unknown or missing:
            raise ValueError(
                f"{part} features break the schema: unknown {sorted(unknown)}, "
                f"missing {sorted(missing)}"
            )
    example = tf.train.SequenceExample()
    for name, value in context.items():
        example.context.feature[name].CopyFrom(_feature(schema["context"][name]["dtype"], [value]))
    for name, steps in sequence.items():
        spec = schema["sequence"][name]
        if len(steps) != length:
            raise ValueError(f"sequence feature {name!r} has {len(steps)} steps, expected {length}")
        feature_list = example.feature_lists.feature_list[name]
        for step in steps:
            feature_list.feature.append(
                _feature(spec["dtype"], step if spec.get("ragged") else [step])
            )
    return example.SerializeToString(deterministic=True)


def parsing_spec(names: set[str] | None = None) -> tuple[dict, dict]:
    """(context_features, sequence_features) for tf.io.parse_single_sequence_example,
    restricted to ``names`` when given."""
    schema = load_schema()
    keep = (lambda n: True) if names is None else (lambda n: n in names)
    context = {
        n: tf.io.FixedLenFeature([], _DTYPES[s["dtype"]])
        for n, s in schema["context"].items()
        if keep(n)
    }
    sequence = {}
    for n, s in schema["sequence"].items():
        if keep(n):
            dtype = _DTYPES[s["dtype"]]
            sequence[n] = (
                tf.io.RaggedFeature(dtype)
                if s.get("ragged")
                else tf.io.FixedLenSequenceFeature([], dtype, allow_missing=not s["required"])
            )
    return context, sequence


def decode(serialized: bytes | tf.Tensor, names: set[str] | None = None) -> dict[str, tf.Tensor]:
    """One record as a flat dict of tensors (context scalars and [T] / [T,(C)] sequences;
    [T, D] float16 for float16 features, [0, 0] when the record has none)."""
    context_spec, sequence_spec = parsing_spec(names)
    context, sequence = tf.io.parse_single_sequence_example(serialized, context_spec, sequence_spec)
    spec = load_schema()["sequence"]
    for name, value in sequence.items():
        if spec[name]["dtype"] == "float16":
            sequence[name] = tf.io.decode_raw(value, tf.float16, little_endian=True)
    return {**context, **sequence}
