"""The neighbour-word language-modelling objective (Rei 2017): its loss against a numpy
reference, padding, no sight of the predicted word, config checks, and a tiny training."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the Viterbi op that exported models call)

from etagger import config as config_lib
from etagger import conll
from etagger.evaluate import evaluate_split
from etagger.export import export
from etagger.layers.neighbour_lm import NeighbourWordLM
from etagger.model import Tagger
from etagger.train import load_model, train
from tests.fixtures import TINY, predicted_tags, preprocess_tiny, serve_conll


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def reference_loss(lm, states, word_ids, lengths):
    """Both directions' negative log-likelihoods summed over real neighbour pairs, / batch."""

    def weights(dense):
        return [w.numpy() for w in dense.weights]

    fh, bh, fw, bw = (
        weights(d)
        for d in (lm.forward_hidden, lm.backward_hidden, lm.forward_words, lm.backward_words)
    )
    units = states.shape[-1] // 2
    total = 0.0
    for row, ids, n in zip(states, word_ids, lengths):
        targets = [i if i < lm.vocab_size else 1 for i in ids]  # 1 = UNK
        for t in range(n - 1):
            forward = log_softmax(np.tanh(row[t, :units] @ fh[0] + fh[1]) @ fw[0] + fw[1])
            backward = log_softmax(np.tanh(row[t + 1, units:] @ bh[0] + bh[1]) @ bw[0] + bw[1])
            total -= forward[targets[t + 1]] + backward[targets[t]]
    return total / len(lengths)


def test_loss_matches_a_numpy_reference_and_ignores_padding():
    rng = np.random.default_rng(0)
    lm = NeighbourWordLM(vocab_size=6, hidden=3, units=2)
    states = rng.normal(size=(3, 5, 4)).astype(np.float32)
    word_ids = np.array(
        [[2, 9, 3, 5, 4], [4, 1, 7, 0, 0], [3, 0, 0, 0, 0]], np.int64
    )  # 7, 9: beyond lm vocab
    lengths = [5, 3, 1]
    mask = tf.sequence_mask(lengths, 5)
    loss = float(lm(tf.constant(states), word_ids=tf.constant(word_ids), mask=mask))
    assert loss == pytest.approx(reference_loss(lm, states, word_ids, lengths), rel=1e-5)
    # Garbage at padded positions changes nothing.
    noisy = np.where(np.asarray(mask)[..., None], states, 100.0).astype(np.float32)
    assert float(
        lm(tf.constant(noisy), word_ids=tf.constant(word_ids), mask=mask)
    ) == pytest.approx(loss, rel=1e-6)


def test_the_states_it_reads_never_saw_the_word_they_predict():
    config = config_lib.ModelConfig(
        lstm_units=4,
        lstm_layers=2,
        char_filters=((3, 4),),
        char_dim=4,
        lm_weight=0.1,
        embedding_dropout=0.0,
        encoder_dropout=0.0,
    )
    sizes = {"word": 12, "char": 8, "shape": 4}
    model = Tagger(
        config,
        sizes,
        ["O", "B-X", "I-X", "E-X", "S-X"],
        "IOBES",
        np.random.default_rng(1).normal(size=(12, 5)).astype(np.float32),
    )
    rng = np.random.default_rng(2)
    features = {
        "word_id": tf.constant(rng.integers(2, 12, size=(1, 6))),
        "length": tf.constant([6]),
        "char_ids": tf.constant(rng.integers(2, 8, size=(1, 6, 3))),
        "shape_id": tf.constant(rng.integers(2, 4, size=(1, 6))),
    }
    k = 3  # change token k's word, characters and shape
    changed = dict(features)
    for name, high in (("word_id", 12), ("char_ids", 8), ("shape_id", 4)):
        values = features[name].numpy().copy()
        values[0, k] = (values[0, k] - 2 + 1) % (high - 2) + 2
        changed[name] = tf.constant(values)
    _, states = model._encode(features, training=False)
    _, states_changed = model._encode(changed, training=False)
    units = config.lstm_units
    # Forward states before k and backward states after k are those that predict token k.
    np.testing.assert_allclose(states[0, :k, :units], states_changed[0, :k, :units], atol=1e-6)
    np.testing.assert_allclose(
        states[0, k + 1 :, units:], states_changed[0, k + 1 :, units:], atol=1e-6
    )
    assert not np.allclose(states[0, k:, :units], states_changed[0, k:, :units])
    # The potentials (the encoder's last layer) do see the whole sentence.
    assert not np.allclose(model(features)[0, :k], model(changed)[0, :k])


@pytest.mark.parametrize(
    "bad",
    [
        {"lm_weight": -0.1},
        {"lm_weight": 0.1, "encoder": "transformer"},
        {"lm_weight": 0.1, "encoder": "qrnn"},
        {"lm_weight": 0.1, "lm_vocab": 2},
    ],
)
def test_config_refuses_bad_settings(bad):
    with pytest.raises(ValueError, match="lm_"):
        config_lib.ModelConfig(**bad)


def test_tiny_model_with_the_objective_fits_and_serves_like_evaluation(tmp_path):
    data_dir = preprocess_tiny(tmp_path)
    config = config_lib.Config.from_dict(
        {**TINY, "model": {**TINY["model"], "lm_weight": 0.1, "lm_vocab": 20}}
    )
    result = train(data_dir / "data", config, tmp_path / "m", progress=False)
    assert result["dev_entity_f1"] >= 0.95
    evaluate_split(tmp_path / "m", data_dir / "data", "test", tmp_path / "pred.txt")
    loaded = tf.saved_model.load(str(export(tmp_path / "m", tmp_path / "saved")))
    tags, _ = serve_conll(
        loaded, data_dir / "conll" / "test.txt", "tag_with_confidence", columns=("pos",)
    )
    assert tags == predicted_tags(tmp_path / "pred.txt")
    assert len(list(conll.read_conll(data_dir / "conll" / "test.txt"))) == len(tags)
    # The export leaves the objective's weights out: tagging never reads them.
    model = load_model(tmp_path / "m")[0]
    assert len(model.lm.variables) == 4 * 2  # 4 dense layers' kernels and biases
    assert (
        len(loaded.model_variables)
        == len(model.serving_variables())
        == len(model.variables) - len(model.lm.variables)
    )
