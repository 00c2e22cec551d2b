"""Tiny synthetic CoNLL data and GloVe files that tests write into tmp folders."""
from __future__ import annotations

import random
from pathlib import Path

PEOPLE = ["John Smith", "Mary Jones", "Angela Merkel", "Peter Blackburn", "Ana"]
PLACES = ["Paris", "New York", "Berlin", "Lisbon", "Tokyo"]
ORGS = ["Reuters", "European Union", "Acme Corp", "UN"]
VERBS = ["visited", "left", "praised", "met officials in", "spoke about"]
TAG_COLUMNS = {"PER": ("NNP", "I-NP"), "LOC": ("NNP", "I-NP"), "ORG": ("NNP", "I-NP")}


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
    path.write_text("".join(w + " " + " ".join(f"{rng.uniform(-1, 1):.4f}" for _ in range(dim)) + "\n"
                            for w in words))
    return path
