"""Token features as TensorFlow ops: the one definition used by Beam preprocessing, by
training (through the ids it precomputes) and by the exported serving graph.

Every function takes string tensors of any shape (dense or ragged) and returns tensors of
the same shape, so the same code runs eagerly on a Beam batch and inside a SavedModel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import tensorflow as tf

from etagger import fsutil
from etagger.config import FeatureConfig

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
    "gazetteer": "gazetteer.txt",
}
# Id vocabularies start with PAD and UNK; the tag vocabulary has neither (tags are never
# unknown in labelled data, and padded positions are masked out of the CRF). Gazetteer
# entries are "TYPE<TAB>normalised words joined by spaces", not ids.
RESERVED: dict[str, tuple[str, ...]] = {
    name: (PAD, UNK) for name in VOCAB_FILES if name not in ("tag", "gazetteer")
}
RESERVED["tag"] = RESERVED["gazetteer"] = ()


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
    return _first_in_rows(tf.strings.unicode_split(words, "UTF-8"), config.max_word_chars)


def _first_in_rows(chars, n: int):
    """``chars[..., :n]``, slicing only the innermost ragged rows: slicing a ragged tensor
    with uniform outer dimensions puts assertion branches into every graph that does it,
    the serving graph included, and they also block some of Grappler's optimizations."""
    if isinstance(chars, tf.RaggedTensor) and chars.ragged_rank > 1:
        return chars.with_values(_first_in_rows(chars.values, n))
    return chars[..., :n]


def vocab_keys(words: tf.Tensor, config: FeatureConfig) -> dict[str, tf.Tensor]:
    """The strings each vocabulary is built from and looked up with, for a tensor of words."""
    return {
        "word": normalize_words(words, config),
        "char": word_chars(words, config),
        "shape": word_shapes(words, config),
    }


def gazetteer_types(entries: Sequence[str]) -> list[str]:
    """The entity types of gazetteer entries, sorted: type i is bit i of a gazetteer id."""
    return sorted({entry.split("\t", 1)[0] for entry in entries})


def gazetteer_ids(words: tf.Tensor, table: tf.lookup.StaticHashTable, max_words: int) -> tf.Tensor:
    """For normalised words [B, T] ("" at padding; dense or ragged): int64 [B, T] bit masks,
    bit i set where the word lies inside a run of 1..max_words words that the gazetteer
    lists with type i. ``table`` maps "w1 w2 ..." to the OR of its types' bits (else 0)."""
    ragged = isinstance(words, tf.RaggedTensor)
    dense = words.to_tensor("") if ragged else words
    width = tf.shape(dense)[1]
    ids = tf.zeros(tf.shape(dense), tf.int64)
    for n in range(1, max_words + 1):
        starts = tf.maximum(width - n + 1, 0)  # (a negative slice end would count from the end)
        grams = tf.strings.join([dense[:, k : k + starts] for k in range(n)], separator=" ")
        bits = table.lookup(grams)  # [B, max(T - n + 1, 0)]: a match starting at each word
        for k in range(n):  # ... covers that word and the next n - 1
            ids = tf.bitwise.bitwise_or(ids, tf.pad(bits, [[0, 0], [k, n - 1 - k]])[:, :width])
    return tf.RaggedTensor.from_tensor(ids, lengths=words.row_lengths()) if ragged else ids


def gazetteer_entries(
    names: Sequence[tuple[str, Sequence[str]]], config: FeatureConfig
) -> list[str]:
    """The gazetteer.txt entries of (type, words) names, their words normalised like word
    lookups (in one TF call for all names). Names with more than ``max_gazetteer_words``
    words are never matched, so they are left out."""
    names = [
        (kind, list(words)) for kind, words in names if 0 < len(words) <= config.max_gazetteer_words
    ]
    if not names:
        return []
    flat = normalize_words(tf.constant([w for _, words in names for w in words]), config).numpy()
    normalised = iter(w.decode("utf-8") for w in flat)
    return [kind + "\t" + " ".join(next(normalised) for _ in words) for kind, words in names]


def gazetteer_entry(kind: str, words: Sequence[str], config: FeatureConfig) -> str | None:
    """The gazetteer.txt entry of one name, or None when it is too long to be matched."""
    entries = gazetteer_entries([(kind, words)], config)
    return entries[0] if entries else None


def read_gazetteer_file(path: str | Path, config: FeatureConfig) -> list[str]:
    """Entries of a user gazetteer: one name per line, "TYPE<TAB>words of the name"
    (blank lines and lines starting with # are skipped). A malformed line raises
    ConllFormatError naming the file and line."""
    from etagger.conll import ConllFormatError

    names = []
    try:
        lines = fsutil.read_text(str(path)).split("\n")
    except UnicodeDecodeError as e:
        raise ConllFormatError(str(path), 1, f"not valid UTF-8 ({e})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith("#"):
            continue
        kind, tab, name = line.rstrip("\r").partition("\t")
        if not tab or not kind or kind != kind.strip() or " " in kind or not name.split():
            raise ConllFormatError(str(path), number, f"expected TYPE<TAB>name, got {line!r}")
        names.append((kind, name.split()))
    return gazetteer_entries(names, config)


def read_vocab(path: str | Path) -> list[str]:
    """One entry per line; line i is id i."""
    return fsutil.read_text(str(path)).split("\n")[:-1]


def write_vocab(path: str | Path, entries: Sequence[str]) -> None:
    for entry in entries:
        if not entry or "\n" in entry:
            raise ValueError(f"vocabulary entry {entry!r} cannot be written one per line")
    with fsutil.atomic_write(path) as f:
        f.write("".join(entry + "\n" for entry in entries))


def vocab_sizes(vocabs: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Id-space size per vocabulary; the gazetteer's ids are bit masks over its types."""
    sizes = {name: len(entries) for name, entries in vocabs.items()}
    if "gazetteer" in vocabs:
        sizes["gazetteer"] = 2 ** len(gazetteer_types(vocabs["gazetteer"]))
    return sizes


def load_vocabs(vocab_dir: str | Path) -> dict[str, list[str]]:
    """Every vocabulary file present in ``vocab_dir``."""
    paths = {name: fsutil.join(str(vocab_dir), file) for name, file in VOCAB_FILES.items()}
    return {name: read_vocab(path) for name, path in paths.items() if fsutil.exists(path)}


class FeatureExtractor(tf.Module):
    """Maps token columns to ids: word, char, shape, POS/chunk/tag when present, and the
    gazetteer bit mask when there is a gazetteer vocabulary.

    Call it with a dict of string tensors {"word": [B,(T)], "pos": ..., "tag": ...};
    it returns {"word_id": [B,(T)], "char_ids": [B,(T),(C)], "shape_id": ..., "pos_id": ...,
    "tag_id": ..., "gazetteer_id": ...} as int64. Unknown strings map to UNK_ID (tags to -1).
    """

    def __init__(self, vocabs: Mapping[str, Sequence[str]], config: FeatureConfig):
        super().__init__(name="features")
        self.config = config
        self.tables = {
            name: self._table(entries, -1 if name == "tag" else UNK_ID)
            for name, entries in vocabs.items()
            if name != "gazetteer"
        }
        if vocabs.get("gazetteer"):
            types = gazetteer_types(vocabs["gazetteer"])
            bits: dict[str, int] = {}
            for entry in vocabs["gazetteer"]:
                kind, phrase = entry.split("\t", 1)
                bits[phrase] = bits.get(phrase, 0) | 1 << types.index(kind)
            self.gazetteer = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(list(bits), tf.string), tf.constant(list(bits.values()), tf.int64)
                ),
                0,
            )
        else:
            self.gazetteer = None

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
        if self.gazetteer is not None:
            out["gazetteer_id"] = gazetteer_ids(
                keys["word"], self.gazetteer, self.config.max_gazetteer_words
            )
        return out
