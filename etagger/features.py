"""Token features as TensorFlow ops: the one definition used by Beam preprocessing, by
training (through the ids it precomputes) and by the exported serving graph.

Every function takes string tensors of any shape (dense or ragged) and returns tensors of
the same shape, so the same code runs eagerly on a Beam batch and inside a SavedModel.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping, Sequence

import tensorflow as tf

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
# Vocabulary name -> file name inside ``OUT/vocab/``.
VOCAB_FILES = {
    "word": "words.txt",
    "char": "chars.txt",
    "shape": "shapes.txt",
    "pos": "pos.txt",
    "chunk": "chunk.txt",
    "tag": "tags.txt",
}
# Id vocabularies start with PAD and UNK; the tag vocabulary has neither (tags are never
# unknown in labelled data, and padded positions are masked out of the CRF).
RESERVED = {name: (PAD, UNK) for name in VOCAB_FILES if name != "tag"}
RESERVED["tag"] = ()


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """How tokens become features. Saved with the preprocessed data and the model."""

    lowercase: bool = True  # GloVe 6B is lowercased; case survives in chars and shape.
    zero_digits: bool = False  # map every digit to 0 before the word lookup
    max_word_chars: int = 30  # longer words keep their first characters only
    max_shape_chars: int = 8


def normalize_words(words: tf.Tensor, config: FeatureConfig) -> tf.Tensor:
    """The form a word is looked up under in the word vocabulary and in GloVe."""
    if config.lowercase:
        words = tf.strings.lower(words, encoding="utf-8")
    if config.zero_digits:
        words = tf.strings.regex_replace(words, r"\d", "0")
    return words


def word_shapes(words: tf.Tensor, config: FeatureConfig) -> tf.Tensor:
    """Compressed word shape: "Xx" for "Smith", "X.X." for "U.S.", "d-d-d" for "1996-08-22".

    Upper-case letters become X, other letters x, digits d; runs collapse to one symbol and
    the shape is cut to ``max_shape_chars`` characters. The order of the replacements
    matters: letters are replaced before digits, so the symbols never clash.
    """
    shapes = tf.strings.regex_replace(words, r"\p{Lu}+", "X")
    shapes = tf.strings.regex_replace(shapes, r"[\p{Ll}\p{Lt}\p{Lm}\p{Lo}]+", "x")
    shapes = tf.strings.regex_replace(shapes, r"\p{N}+", "d")
    return tf.strings.substr(shapes, 0, config.max_shape_chars, unit="UTF8_CHAR")


def word_chars(words: tf.Tensor, config: FeatureConfig) -> tf.RaggedTensor:
    """The first ``max_word_chars`` characters of each word: shape words.shape + [(C)]."""
    chars = tf.strings.unicode_split(words, "UTF-8")
    return chars[..., : config.max_word_chars]


def vocab_keys(words: tf.Tensor, config: FeatureConfig) -> dict[str, tf.Tensor]:
    """The strings each vocabulary is built from and looked up with, for a tensor of words."""
    return {
        "word": normalize_words(words, config),
        "char": word_chars(words, config),
        "shape": word_shapes(words, config),
    }


def read_vocab(path: str | Path) -> list[str]:
    """One entry per line; line i is id i."""
    return Path(path).read_text(encoding="utf-8").split("\n")[:-1]


def write_vocab(path: str | Path, entries: Sequence[str]) -> None:
    from etagger.conll import atomic_write

    for entry in entries:
        if not entry or "\n" in entry:
            raise ValueError(f"vocabulary entry {entry!r} cannot be written one per line")
    with atomic_write(path) as f:
        f.write("".join(entry + "\n" for entry in entries))


def load_vocabs(vocab_dir: str | Path) -> dict[str, list[str]]:
    """Every vocabulary file present in ``vocab_dir``."""
    vocab_dir = Path(vocab_dir)
    return {name: read_vocab(vocab_dir / file) for name, file in VOCAB_FILES.items()
            if (vocab_dir / file).exists()}


class FeatureExtractor(tf.Module):
    """Maps token columns to ids: word, char, shape, and POS/chunk/tag when present.

    Call it with a dict of string tensors {"word": [B,(T)], "pos": ..., "tag": ...};
    it returns {"word_id": [B,(T)], "char_ids": [B,(T),(C)], "shape_id": ..., "pos_id": ...,
    "tag_id": ...} as int64. Unknown strings map to UNK_ID (tags to -1).
    """

    def __init__(self, vocabs: Mapping[str, Sequence[str]], config: FeatureConfig):
        super().__init__(name="features")
        self.config = config
        self.tables = {name: self._table(entries, -1 if name == "tag" else UNK_ID)
                       for name, entries in vocabs.items()}

    @staticmethod
    def _table(entries: Sequence[str], default: int) -> tf.lookup.StaticHashTable:
        keys = tf.constant(list(entries), tf.string)
        ids = tf.range(len(entries), dtype=tf.int64)
        return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, ids), default)

    def __call__(self, columns: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        keys = vocab_keys(columns["word"], self.config)
        out = {
            "word_id": self.tables["word"].lookup(keys["word"]),
            "char_ids": tf.ragged.map_flat_values(self.tables["char"].lookup, keys["char"]),
            "shape_id": self.tables["shape"].lookup(keys["shape"]),
        }
        for name in ("pos", "chunk", "tag"):
            if name in columns and name in self.tables:
                out[f"{name}_id"] = self.tables[name].lookup(columns[name])
        return out
