"""Ensembles (etagger.ensemble): the decoding rule against brute force, and evaluation,
export and refusal of mismatched members on tiny trained models."""

import itertools
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from etagger import config as config_lib
from etagger import crf
from etagger.ensemble import Ensemble
from tests.fixtures import TINY, predicted_tags, preprocess_tiny, serve_conll

IOBES_TAGS = ["O", "B-X", "I-X", "E-X", "S-X"]


class FixedMember(tf.Module):
    """A stand-in tagger: fixed potentials and a CRF with random transition weights."""

    def __init__(self, potentials, seed):
        super().__init__()
        self.config = config_lib.ModelConfig()
        self.num_tags = potentials.shape[-1]
        self.potentials = tf.constant(potentials, tf.float32)
        self.crf = crf.CRF(self.num_tags, allowed=crf.allowed_transitions(IOBES_TAGS, "IOBES"))
        self.crf.build(None)
        rng = np.random.default_rng(seed)
        for weight in (self.crf.transitions, self.crf.start_transitions, self.crf.end_transitions):
            weight.assign(rng.normal(size=weight.shape))

    def __call__(self, features, training=False):
        return self.potentials


def test_ensemble_decodes_the_allowed_path_of_highest_mean_log_likelihood():
    rng = np.random.default_rng(0)
    lengths = np.array([4, 3, 1], np.int32)
    members = [FixedMember(rng.normal(size=(3, 4, 5)) * 2, seed) for seed in range(3)]
    ensemble = Ensemble(members)
    paths = ensemble.decode({"length": tf.constant(lengths)}).numpy()
    allowed = crf.allowed_transitions(IOBES_TAGS, "IOBES")
    for b, n in enumerate(lengths):

        def mean_log_likelihood(path, b=b, n=n):
            tags = tf.constant([list(path)], tf.int32)
            return np.mean(
                [
                    m.crf.log_likelihood(
                        m.potentials[b : b + 1, :n], tags, tf.constant([n])
                    ).numpy()[0]
                    for m in members
                ]
            )

        candidates = [
            p
            for p in itertools.product(range(5), repeat=int(n))
            if allowed[1][p[0]]
            and allowed[2][p[-1]]
            and all(allowed[0][a, c] for a, c in zip(p, p[1:]))
        ]
        assert tuple(paths[b, :n]) == max(candidates, key=mean_log_likelihood)
        assert (paths[b, n:] == 0).all()
    # The ensemble's marginals are those of the averaged CRF: distributions over the tags.
    marginals = ensemble.marginals(ensemble({}), tf.constant(lengths)).numpy()
    assert np.allclose(marginals[0].sum(-1), 1.0, atol=1e-5)


def test_ensemble_needs_two_members_of_one_kind():
    member = FixedMember(np.zeros((1, 2, 5)), 0)
    with pytest.raises(ValueError, match="at least two"):
        Ensemble([member])
    softmax = FixedMember(np.zeros((1, 2, 5)), 1)
    softmax.config = config_lib.ModelConfig(decoder="softmax")
    with pytest.raises(ValueError, match="differ in decoder"):
        Ensemble([member, softmax])


# ------------------------------------------------------------ trained tiny members
@pytest.fixture(scope="module")
def tiny_members(tmp_path_factory):
    """The tiny fixture and two TINY models trained on it with different seeds."""
    from etagger.train import train

    root = preprocess_tiny(tmp_path_factory.mktemp("tiny"))
    dirs = []
    for seed in (42, 1):
        config = config_lib.Config.from_dict({**TINY, "train": {**TINY["train"], "seed": seed}})
        train(root / "data", config, root / f"model_{seed}", progress=False)
        dirs.append(root / f"model_{seed}")
    return root, dirs


def test_ensemble_evaluates_exports_and_serves_the_same_tags(tiny_members, tmp_path):
    from etagger.evaluate import evaluate_split
    from etagger.export import export

    root, dirs = tiny_members
    summary, text = evaluate_split(dirs, root / "data", "train")
    assert summary["entity_f1"] >= 0.95, text

    # A model averaged with itself is the model: the plumbing adds nothing of its own.
    evaluate_split(dirs[0], root / "data", "test", tmp_path / "one.txt")
    evaluate_split([dirs[0], dirs[0]], root / "data", "test", tmp_path / "self.txt")
    assert (tmp_path / "self.txt").read_text() == (tmp_path / "one.txt").read_text()

    # The exported ensemble tags as the evaluated one does, and records its members.
    evaluate_split(dirs, root / "data", "test", tmp_path / "pred.txt")
    saved = export(dirs, tmp_path / "saved")
    tags, out = serve_conll(
        tf.saved_model.load(str(saved)),
        root / "conll" / "test.txt",
        "tag_with_confidence",
        columns=("pos",),
    )
    assert tags == predicted_tags(tmp_path / "pred.txt")
    confidence = out["token_confidence"].numpy()
    assert ((confidence >= 0) & (confidence <= 1.0 + 1e-6)).all()
    meta = json.loads((saved / "assets.extra" / "etagger.json").read_text())
    assert [m["model_dir"] for m in meta["ensemble"]] == [str(d) for d in dirs]


def test_ensemble_refuses_members_trained_on_other_data(tiny_members, tmp_path):
    from etagger.evaluate import evaluate_split

    root, dirs = tiny_members
    other = tmp_path / "other"
    shutil.copytree(dirs[1], other)
    tags = (other / "vocab" / "tags.txt").read_text().split("\n")
    (other / "vocab" / "tags.txt").write_text("\n".join(tags[1:2] + tags[:1] + tags[2:]))
    with pytest.raises(ValueError, match="cannot join"):
        evaluate_split([dirs[0], other], root / "data", "test")
