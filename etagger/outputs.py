"""What tagged sentences look like on disk: CoNLL (conlleval input), JSONL spans, Parquet.

The Parquet schema is defined once, in ``schemas/tagged_sentence.json``; JSONL lines carry
the same fields. Character offsets (``start``/``end``) refer to the input line for raw text
and to the sentence's tokens joined by single spaces for CoNLL input.
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from etagger import conll, packing, tagschemes

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "tagged_sentence.json"


def conll_text(columns: Sequence[Sequence[str]], pred: Sequence[str]) -> str:
    """One sentence of conlleval input: the given columns then the predicted tag, one
    token per line, a blank line after. With gold tags as the last given column this is
    ``word [pos chunk] gold pred``; without, ``word pred``."""
    return "".join(" ".join(fields) + "\n" for fields in zip(*columns, pred)) + "\n"


def token_offsets(sentence: conll.Sentence) -> list[tuple[int, int]]:
    """Character offsets of the tokens: from the raw line, or in the space-joined tokens."""
    if sentence.offsets:
        return list(sentence.offsets)
    offsets, position = [], 0
    for word in sentence.words:
        offsets.append((position, position + len(word)))
        position += len(word) + 1
    return offsets


def entity_spans(
    sentence: conll.Sentence, tags: Sequence[str], confidence: Sequence[float] | None = None
) -> list[dict]:
    """Entities of IOB2 ``tags`` with token and character spans and, when given, the entity
    confidence (the lowest CRF marginal of its tokens, the same for each of them)."""
    offsets = token_offsets(sentence)
    spans = []
    for kind, first, last in tagschemes.chunks(tags):
        spans.append(
            {
                "type": kind,
                "token_start": first,
                "token_end": last,
                "start": offsets[first][0],
                "end": offsets[last - 1][1],
                "text": " ".join(sentence.words[first:last]),
                "confidence": None if confidence is None else round(float(confidence[first]), 4),
            }
        )
    return spans


def record(
    sentence: conll.Sentence,
    tags: Sequence[str],
    token_confidence: Sequence[float] | None = None,
    entity_confidence: Sequence[float] | None = None,
) -> dict:
    """One tagged sentence with the fields of ``schemas/tagged_sentence.json``."""
    raw = bool(sentence.offsets)
    return {
        "source": Path(sentence.source).name,
        "line": sentence.line,
        "sentence": sentence.index % packing.RAW_LINE_STRIDE if raw else sentence.index,
        "tokens": list(sentence.words),
        "tags": list(tags),
        "token_confidence": None
        if token_confidence is None
        else [round(float(c), 4) for c in token_confidence],
        "entities": entity_spans(sentence, tags, entity_confidence),
    }


def jsonl_text(records: Iterable[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)


@functools.cache
def parquet_schema():
    """The pyarrow schema built from ``schemas/tagged_sentence.json``."""
    import pyarrow as pa

    def arrow_type(spec):
        if isinstance(spec, str):
            return {
                "string": pa.string(),
                "int32": pa.int32(),
                "int64": pa.int64(),
                "float32": pa.float32(),
                "bool": pa.bool_(),
            }[spec]
        if "list" in spec:
            return pa.list_(arrow_type(spec["list"]))
        return pa.struct(
            [
                pa.field(f["name"], arrow_type(f["type"]), f.get("nullable", True))
                for f in spec["struct"]
            ]
        )

    fields = json.loads(SCHEMA_PATH.read_text())["fields"]
    return pa.schema(
        [pa.field(f["name"], arrow_type(f["type"]), f.get("nullable", True)) for f in fields]
    )


def parquet_bytes(records: Sequence[dict]) -> bytes:
    """A Parquet file (zstd) holding ``records``, as bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema()
    table = pa.Table.from_pylist(list(records), schema=schema)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()
