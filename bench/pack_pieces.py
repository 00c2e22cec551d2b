"""Counts, for packs of consecutive sentences (``--contextual-pack-tokens``) of several sizes,
how many words fall beyond a BERT encoder's piece limit (they get zero vectors) and how many
sentences get no neighbours, per CoNLL file. One JSON line per file and size.

    python bench/pack_pieces.py --encoder work/minilm-hub --conll ../shared/data/conll2003 --sizes 64 96 128
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from etagger import conll, packing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", required=True, help="convert-bert output folder")
    parser.add_argument("--conll", required=True, help="folder of train.txt, dev.txt, test.txt")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128])
    parser.add_argument("--max-pieces", type=int, default=256)
    args = parser.parse_args()

    import tensorflow as tf

    from etagger.layers.contextual import WordPieces

    pieces_of = WordPieces(args.encoder)
    for split in ("train", "dev", "test"):
        sentences = list(conll.read_conll(Path(args.conll) / f"{split}.txt"))
        counts = pieces_of(tf.constant([w for s in sentences for w in s.words])).row_lengths()
        ends = np.cumsum([len(s) for s in sentences])
        per_sentence = dict(zip((s.index for s in sentences), np.split(counts.numpy(), ends[:-1])))
        for size in args.sizes:
            packs = packing.pack_sentences(sentences, size)
            cut = sum(
                int(
                    (
                        np.cumsum(np.concatenate([per_sentence[s.index] for s in p]))
                        > args.max_pieces - 2
                    ).sum()
                )
                for p in packs
            )
            print(
                json.dumps(
                    {
                        "split": split,
                        "pack_tokens": size,
                        "packs": len(packs),
                        "sentences": len(sentences),
                        "sentences_alone": sum(len(p) == 1 for p in packs),
                        "words_cut": cut,
                    }
                )
            )


if __name__ == "__main__":
    main()
