"""Do a frozen encoder's vectors of words read alone know entity types that GloVe does not?

A probe, not a tagger: a one-hidden-layer classifier reads one word's static vector and
predicts its gold type (O, PER, LOC, ORG, MISC), trained on the training tokens and scored
on the tokens of another split whose word never occurs in training (where a student tagger
lags its teacher most). Vectors: the GloVe rows of a preprocess output, the encoder's vector
of each vocabulary word read alone (``preprocess --contextual`` settings, no neighbours),
reduced to 50 dimensions by PCA, and both joined.

Usage: python bench/static_vector_probe.py --data work/conll03 --encoder work/minilm-hub \
    --train ../shared/data/conll2003/train.txt --eval ../shared/data/conll2003/dev.txt
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from etagger import conll, features, tagschemes
from etagger.stored_vectors import ContextualSpec, WordVectors

TYPES = ("O", "PER", "LOC", "ORG", "MISC")
RESERVED = len(features.RESERVED["word"])  # <pad>, <unk>: rows that are no word's vector


def typed_tokens(path: str, index: dict[str, int]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(lower-cased words, their vocabulary ids, their gold type ids) of a CoNLL file."""
    words, types = [], []
    for s in conll.read_conll(path):
        kinds = ["O"] * len(s)
        for kind, start, end in tagschemes.chunks(s.columns["tag"]):
            kinds[start:end] = [kind] * (end - start)
        words += [w.lower() for w in s.columns["word"]]
        types += [TYPES.index(k) for k in kinds]
    ids = np.array([index.get(w, index[features.UNK]) for w in words])
    return words, ids, np.array(types)


def pca(matrix: np.ndarray, dim: int) -> np.ndarray:
    rows = matrix[RESERVED:] - matrix[RESERVED:].mean(0)
    _, _, vt = np.linalg.svd(rows, full_matrices=False)
    out = (matrix - matrix[RESERVED:].mean(0)) @ vt[:dim].T
    out[:RESERVED] = 0.0
    return out


def scaled(matrix: np.ndarray) -> np.ndarray:
    return (matrix / matrix[RESERVED:].std()).astype(np.float32)


def probe(vectors: np.ndarray, train: tuple, evaluate: tuple, seed: int = 0) -> dict:
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.layers.Dense(128, activation="relu"), keras.layers.Dense(5)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(vectors[train[0]], train[1], epochs=5, batch_size=256, verbose=0)
    predicted = model.predict(vectors[evaluate[0]], verbose=0).argmax(1)
    entity = evaluate[1] != 0
    return {
        "entity_type_accuracy": round(float(np.mean(predicted[entity] == evaluate[1][entity])), 4),
        "o_accuracy": round(float(np.mean(predicted[~entity] == 0)), 4),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="preprocess output (vocab, GloVe rows)")
    parser.add_argument("--encoder", required=True, help="convert-bert output")
    parser.add_argument("--train", required=True)
    parser.add_argument("--eval", required=True, help="scored on its words unseen in --train")
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args(argv)
    vocab = features.load_vocabs(f"{args.data}/vocab")["word"]
    index = {w: i for i, w in enumerate(vocab)}
    glove = np.load(f"{args.data}/glove_filtered.npy")
    train_words, *train = typed_tokens(args.train, index)
    eval_words, eval_ids, eval_types = typed_tokens(args.eval, index)
    seen = set(train_words)
    unseen = np.array([w not in seen and w in index for w in eval_words])
    evaluate = (eval_ids[unseen], eval_types[unseen])
    results: dict = {
        "unseen_tokens": int(unseen.sum()),
        "of_them_entity": int(evaluate[1].astype(bool).sum()),
    }
    for pooling in ("first", "mean"):
        encoder = WordVectors(ContextualSpec(args.encoder, pooling, args.layers))
        alone = np.stack([v[0] for v in encoder([[w or "."] for w in vocab])]).astype(np.float32)
        reduced = scaled(pca(alone, 50))
        results[f"encoder_{pooling}_50"] = probe(reduced, train, evaluate)
        results[f"glove+encoder_{pooling}_50"] = probe(
            np.concatenate([scaled(glove), reduced], 1), train, evaluate
        )
    results["glove"] = probe(scaled(glove), train, evaluate)
    print(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
