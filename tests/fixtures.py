"""Tiny synthetic CoNLL data and GloVe files that tests write into tmp folders."""

from __future__ import annotations

import os
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = str(ROOT / "models" / "conll03-bilstm1")  # the bundled model
# Whether etagger's LSTM op computes bfloat16 products here (`export --bf16`): the CPU has
# AVX512-BF16 and ETAGGER_PORTABLE_KERNELS does not keep them float32.
CPUINFO = Path("/proc/cpuinfo")
BF16_KERNELS = (
    CPUINFO.exists()
    and "avx512_bf16" in CPUINFO.read_text()
    and "ETAGGER_PORTABLE_KERNELS" not in os.environ
)
# Raw news text (a blank line between its documents) for tag-corpus and run-job tests.
RAW_NEWS = (
    "Angela Merkel met Emmanuel Macron in Paris on Monday. Shares of Siemens rose.\n"
    "\n"
    "The United Nations said so in New York.\n"
)
PEOPLE = ["John Smith", "Mary Jones", "Angela Merkel", "Peter Blackburn", "Ana"]
PLACES = ["Paris", "New York", "Berlin", "Lisbon", "Tokyo"]
ORGS = ["Reuters", "European Union", "Acme Corp", "UN"]
VERBS = ["visited", "left", "praised", "met officials in", "spoke about"]
TAG_COLUMNS = {"PER": ("NNP", "I-NP"), "LOC": ("NNP", "I-NP"), "ORG": ("NNP", "I-NP")}
# A tiny BiLSTM-CRF config that fits the fixture in 12 epochs (tests/test_train.py).
TINY = {
    "model": {
        "lstm_units": 16,
        "lstm_layers": 1,
        "char_filters": [[3, 8]],
        "char_dim": 8,
        "use_pos": True,
        "embedding_dropout": 0.1,
        "encoder_dropout": 0.1,
    },
    "train": {
        "batch_size": 8,
        "epochs": 12,
        "learning_rate": 0.01,
        "warmup_steps": 5,
        "patience": 12,
    },
}


def sentence(rng: random.Random) -> list[tuple[str, str, str, str]]:
    """One "ENTITY verb ENTITY ." sentence as (word, POS, chunk, IOB2 tag) rows."""
    rows = []
    for kind, names in (("PER", PEOPLE), (None, VERBS), (rng.choice(["LOC", "ORG"]), None)):
        if kind is None:
            rows += [(w, "VBD", "B-VP", "O") for w in rng.choice(names).split()]
            continue
        words = rng.choice(names or (PLACES if kind == "LOC" else ORGS)).split()
        rows += [(w, "NNP", "I-NP", ("B-" if i == 0 else "I-") + kind) for i, w in enumerate(words)]
    rows.append((".", ".", "O", "O"))
    return rows


def write_conll_split(path: Path, n: int, seed: int, docs: int = 2) -> str:
    """Writes ``n`` sentences in ``docs`` documents, CoNLL-2003 layout; returns the text."""
    rng = random.Random(seed)
    text = ""
    for i in range(n):
        if i % max(n // docs, 1) == 0:
            text += "-DOCSTART- -X- -X- O\n\n"
        text += "".join(" ".join(r) + "\n" for r in sentence(rng)) + "\n"
    path.write_text(text)
    return text


def write_conll_dir(folder: Path, sizes=(40, 10, 10)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in zip(("train", "dev", "test"), sizes, (1, 2, 3)):
        write_conll_split(folder / f"{split}.txt", n, seed)
    return folder


def write_glove(path: Path, dim: int = 8) -> Path:
    """A tiny GloVe text file covering some (not all) fixture words."""
    rng = random.Random(0)
    words = ["john", "smith", "paris", "berlin", "visited", "left", ".", "reuters", "the"]
    path.write_text(
        "".join(
            w + " " + " ".join(f"{rng.uniform(-1, 1):.4f}" for _ in range(dim)) + "\n"
            for w in words
        )
    )
    return path


def write_small_bert_checkpoint(
    folder: Path,
    vocab: list[str],
    vocab_size: int | None = None,
    hidden: int = 8,
    inter: int = 16,
    layers: int = 2,
    heads: int = 2,
    positions: int = 16,
    seed: int = 0,
) -> dict:
    """A random BERT checkpoint in BertForTokenClassification form ("bert." prefix, a
    classifier head, no pooler): model.safetensors, config.json (uncased) and vocab.txt in
    ``folder``. Returns the encoder weight shapes by their BertModel names."""
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    vocab_size = vocab_size or len(vocab)
    shapes = {
        "embeddings.word_embeddings.weight": (vocab_size, hidden),
        "embeddings.position_embeddings.weight": (positions, hidden),
        "embeddings.token_type_embeddings.weight": (2, hidden),
        "embeddings.LayerNorm.weight": (hidden,),
        "embeddings.LayerNorm.bias": (hidden,),
    }
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for name in (
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ):
            shapes |= {p + name + ".weight": (hidden, hidden), p + name + ".bias": (hidden,)}
        shapes |= {
            p + "intermediate.dense.weight": (inter, hidden),
            p + "intermediate.dense.bias": (inter,),
            p + "output.dense.weight": (hidden, inter),
            p + "output.dense.bias": (hidden,),
        }
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes |= {p + name + ".weight": (hidden,), p + name + ".bias": (hidden,)}
    tensors = {"bert." + k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    tensors["classifier.weight"] = rng.normal(size=(5, hidden)).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(
        f'{{"model_type": "bert", "hidden_size": {hidden}, "num_hidden_layers": {layers},'
        f' "num_attention_heads": {heads}, "intermediate_size": {inter}, "vocab_size": {vocab_size},'
        f' "max_position_embeddings": {positions}, "hidden_act": "gelu", "layer_norm_eps": 1e-5}}'
    )
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return shapes


def preprocess_tiny(root: Path) -> Path:
    """The tiny CoNLL fixture preprocessed (tiny GloVe, 2 shards) into ``root/data``; returns root."""
    from pipelines import preprocess

    write_conll_dir(root / "conll")
    preprocess.run(
        [
            "--data-dir",
            str(root / "conll"),
            "--out",
            str(root / "data"),
            "--glove",
            str(write_glove(root / "glove.txt")),
            "--num-shards",
            "2",
        ]
    )
    return root


def predicted_tags(pred_file: Path) -> list[list[str]]:
    """The last column of a conlleval-format prediction file, per sentence."""
    return [
        [line.split()[-1] for line in block.split("\n")]
        for block in Path(pred_file).read_text().strip("\n").split("\n\n")
    ]


def serve_conll(
    loaded,
    conll_file: Path,
    signature: str = "serving_default",
    extra: int = 0,
    columns: tuple[str, ...] = (),
) -> tuple[list[list[str]], dict]:
    """Tags every sentence of ``conll_file`` in one padded batch (``extra`` more padding
    columns) with an exported model's ``signature``; ``columns`` (e.g. "pos") are fed too.
    Returns (tags per sentence, the raw outputs)."""
    import tensorflow as tf

    from etagger.conll import read_conll

    sentences = list(read_conll(conll_file))
    width = max(map(len, sentences)) + extra

    def pad(column):
        return tf.constant([list(s.columns[column]) + [""] * (width - len(s)) for s in sentences])

    out = loaded.signatures[signature](tokens=pad("word"), **{c: pad(c) for c in columns})
    tags = [
        [t.decode() for t in row[:n]] for row, n in zip(out["tags"].numpy(), out["lengths"].numpy())
    ]
    return tags, out
