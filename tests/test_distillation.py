"""Distillation, end to end on the tiny fixture:

- the loss (``crf.marginal_kl`` of ``crf_marginals``) against a NumPy reference that
  enumerates every tag path, and its gradient against finite differences;
- ``preprocess --soft-targets`` stores the teacher's marginals (its ``tag_marginals``
  signature, in the data's tag order) for train and raw sentences, never for dev or test
  ones, nor for a sentence that is also in dev;
- a student trained on the teacher's silver labels alone (``distill_weight`` 1) tags the
  silver sentences as the teacher does.
"""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pytest
import tensorflow as tf

from etagger import config as config_lib
from etagger import conll, crf, data, records
from tests.fixtures import TINY, preprocess_tiny

TEACHER = {
    "model": {**TINY["model"], "use_pos": False},
    "train": {**TINY["train"], "epochs": 15, "patience": 15},
}


def reference_kl(targets, potentials, lengths, transitions, start, end):
    """sum_t KL(targets_t || p(y_t | x)) per row, p by enumerating all K^L paths."""
    out = []
    for q, pot, n in zip(targets, potentials, lengths):
        if n == 0:
            out.append(0.0)
            continue
        k = pot.shape[1]
        marginals = np.zeros((n, k))
        total = 0.0
        for path in itertools.product(range(k), repeat=n):
            score = start[path[0]] + end[path[-1]] + sum(pot[t, y] for t, y in enumerate(path))
            score += sum(transitions[a, b] for a, b in zip(path, path[1:]))
            weight = np.exp(score)
            total += weight
            for t, y in enumerate(path):
                marginals[t, y] += weight
        marginals /= max(total, 1e-300)
        q_n = q[:n] / q[:n].sum(axis=1, keepdims=True)
        out.append(float(np.sum(q_n * (np.log(q_n) - np.log(marginals)))))
    return np.array(out)


def test_marginal_kl_matches_enumeration_and_finite_differences():
    rng = np.random.default_rng(0)
    b, t, k = 4, 4, 3
    lengths = np.array([4, 2, 1, 0], np.int32)
    potentials = rng.normal(size=(b, t, k))
    params = [rng.normal(size=s) for s in ((k, k), (k,), (k,))]
    targets = rng.dirichlet(np.ones(k), size=(b, t)) * 0.7  # rows need not sum to one
    targets[:, 3] = np.nan  # padding of rows 1-3 never counts, whatever it holds
    targets[0, 3] = rng.dirichlet(np.ones(k))

    def loss(pot):
        marginals = crf.crf_marginals(pot, lengths, *(tf.constant(p) for p in params))
        return crf.marginal_kl(tf.constant(targets), marginals, lengths)

    want = reference_kl(targets, potentials, lengths, *params)
    got = loss(tf.constant(potentials)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert got[3] == 0.0 and (got[:3] > 0).all()

    # The gradient that training follows, against central differences of the float64 reference.
    variable = tf.Variable(potentials)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(loss(variable))
    grad = tape.gradient(total, variable).numpy()
    eps = 1e-4
    for index in [(0, 0, 0), (0, 3, 2), (1, 1, 1), (2, 0, 2)]:
        plus, minus = potentials.copy(), potentials.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric = (
            reference_kl(targets, plus, lengths, *params).sum()
            - reference_kl(targets, minus, lengths, *params).sum()
        ) / (2 * eps)
        assert grad[index] == pytest.approx(numeric, abs=2e-3)
    assert np.all(grad[1, 2:] == 0) and np.all(grad[3] == 0)  # padding gets no gradient


@pytest.fixture(scope="module")
def silver(tmp_path_factory):
    """(root, teacher export, silver data): a teacher trained on the tiny fixture labels its
    train sentences and a raw file (one line repeats a dev sentence) for a student."""
    from etagger.export import export
    from etagger.train import train
    from pipelines import preprocess

    root = preprocess_tiny(tmp_path_factory.mktemp("distil"))
    config = config_lib.Config.from_dict(TEACHER)
    train(root / "data", config, root / "teacher", progress=False)
    teacher = export(root / "teacher", root / "teacher-export")
    dev = next(conll.read_conll(root / "conll" / "dev.txt"))
    (root / "raw.txt").write_text(
        "Mary Jones visited Berlin .\n" + " ".join(dev.words) + "\nReuters praised Ana .\n"
    )
    # A training sentence that dev holds too must get no soft targets either.
    train_text = (root / "conll" / "train.txt").read_text()
    dev_rows = "".join(f"{w} NNP I-NP {t}\n" for w, t in zip(dev.words, dev.columns["tag"]))
    (root / "conll" / "train.txt").write_text(train_text + dev_rows + "\n")
    preprocess.run(
        [
            "--data-dir",
            str(root / "conll"),
            "--raw",
            str(root / "raw.txt"),
            "--vocab-from",
            str(root / "data"),
            "--soft-targets",
            str(teacher),
            "--out",
            str(root / "silver"),
            "--quiet",
        ]
    )
    return root, teacher, root / "silver"


def test_soft_targets_are_the_teachers_marginals_and_never_dev_or_test(silver):
    from etagger.features import load_vocabs
    from etagger.predictor import Predictor

    root, teacher, out = silver
    tags = load_vocabs(out / "vocab")["tag"]
    predictor = Predictor(teacher)
    columns = [predictor.meta["tags"].index(t) for t in tags]
    held_out = {
        conll.sentence_key(s.words)
        for split in ("dev", "test")
        for s in conll.read_conll(root / "conll" / f"{split}.txt")
    }
    seen = {"train": [0, 0], "raw": [0, 0]}
    for split in ("train", "raw", "dev", "test"):
        for record in records.read_records(out, split, {"word", "soft_tags"}):
            key = conll.sentence_key(record["word"])
            if split in ("dev", "test") or key in held_out:
                assert "soft_tags" not in record, (split, record["word"])
                if split in seen:
                    seen[split][1] += 1
                continue
            soft = np.asarray(record["soft_tags"], np.float32)
            want = predictor.marginals([record["word"]])[0][:, columns]
            np.testing.assert_allclose(soft, want, atol=1e-3)
            np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-2)
            seen[split][0] += 1
    # The 41 training sentences include the dev sentence added above, and the tiny fixture's
    # few patterns repeat some more.
    assert sum(seen["train"]) == 41 and seen["train"][1] >= 1 and seen["raw"] == [2, 1]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["train"]["soft_targets"] == seen["train"][0] and stats["raw"]["soft_targets"] == 2
    assert stats["dev"]["soft_targets"] == stats["test"]["soft_targets"] == 0
    info = data.load_preprocess_info(out)
    assert info["soft_target_splits"] == ["train", "raw"]
    assert info["held_out_sentences"] == len(held_out)


def test_student_on_silver_labels_alone_tags_as_the_teacher(silver):
    from etagger.train import input_names, load_model, predict, train

    root, _, out = silver
    teacher_config = config_lib.Config.from_dict(TEACHER)
    config = dataclasses.replace(
        teacher_config,
        train=dataclasses.replace(
            teacher_config.train,
            seed=7,
            epochs=25,
            patience=25,
            train_split="train+dev",  # dev chooses nothing: "best" holds the last epoch
            silver_data=str(out),
            distill_weight=1.0,
        ),
    )
    result = train(root / "data", config, root / "student", progress=False)
    assert result["epochs_run"] == 25
    history = json.loads((root / "student" / "history.json").read_text())
    assert history[-1]["loss"] < history[0]["loss"]
    names = input_names(config) + ("word",)
    predictions = {}
    for name in ("teacher", "student"):
        model, _, vocabs, _ = load_model(root / name)  # the teacher's is the one exported
        dataset = data.make_dataset(out, "train+raw", 16, names, needs=("soft_tags",))
        predictions[name] = [r["pred"] for r in predict(model, dataset, vocabs["tag"])]
    assert len(predictions["student"]) > 30
    assert predictions["student"] == predictions["teacher"]
