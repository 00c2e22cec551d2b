"""What training optimises and when it stops, each against an independent reference:

- the softmax decoder's loss is the mean over real tokens of -log softmax(potentials)[gold]
  (a NumPy reference), padding not counted;
- with the neighbour-word LM objective the loss is the decoder loss plus ``lm_weight`` times
  the LM loss, affine in the weight;
- the learning rate follows warm-up then exponential decay, checked against the formula in
  plain float math;
- early stopping: when dev F1 cannot improve after epoch 1 (learning rate 0: the weights
  never change), training runs exactly 1 + patience epochs and keeps epoch 1 as the best.
"""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

from etagger import config as config_lib
from etagger.model import Tagger
from etagger.train import WarmupExponentialDecay, train
from tests.fixtures import TINY, preprocess_tiny

TAGS = ["O", "B-X", "I-X", "E-X", "S-X"]  # IOBES
SIZES = {"word": 12, "char": 8, "shape": 4}
LENGTHS = [6, 4, 1]
WIDTH = 6
# Gold tags the IOBES CRF allows on the real tokens; padding holds tags that would cost a lot
# if it were counted (the potentials there are zeros, so each padded token adds log K).
GOLD = np.array(
    [
        [0, 1, 2, 3, 0, 4],
        [4, 0, 1, 3, 2, 2],
        [4, 3, 3, 3, 3, 3],
    ],
    np.int32,
)


def tiny_tagger(**model_fields) -> Tagger:
    """A small BiLSTM tagger over SIZES and TAGS with random word vectors; dropout stays at
    its default, so that the tests also show ``training=False`` switches it off."""
    config = config_lib.ModelConfig(
        lstm_units=4, lstm_layers=1, char_filters=((3, 4),), char_dim=4, **model_fields
    )
    vectors = np.random.default_rng(1).normal(size=(SIZES["word"], 5)).astype(np.float32)
    model = Tagger(config, SIZES, TAGS, "IOBES", vectors)
    model(batch())  # builds the variables
    # Freshly initialised scores are nearly uniform, so every token costs about log K, padded
    # or not; sharper scores make a loss that counted padding differ clearly.
    model.projection.kernel.assign(model.projection.kernel * 20.0)
    return model


def batch() -> dict[str, tf.Tensor]:
    """Three sentences of lengths LENGTHS, right-padded to WIDTH with id 0."""
    rng = np.random.default_rng(2)
    mask = np.arange(WIDTH)[None, :] < np.array(LENGTHS)[:, None]
    # Word ids 2..11 (0 = padding, 1 = UNK), some at or beyond a small lm_vocab.
    word_id = np.where(mask, rng.integers(2, SIZES["word"], size=mask.shape), 0)
    char_ids = np.where(mask[..., None], rng.integers(2, SIZES["char"], size=(*mask.shape, 3)), 0)
    shape_id = np.where(mask, rng.integers(2, SIZES["shape"], size=mask.shape), 0)
    return {
        "word_id": tf.constant(word_id, tf.int64),
        "char_ids": tf.constant(char_ids, tf.int64),
        "shape_id": tf.constant(shape_id, tf.int64),
        "length": tf.constant(LENGTHS, tf.int32),
    }


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise log softmax over the last axis, in float64."""
    x = x.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def softmax_reference(potentials: np.ndarray, gold: np.ndarray, lengths) -> float:
    """Mean over real tokens of -log softmax(potentials)[gold], by explicit loops."""
    nll = [
        -log_softmax(potentials[b, t])[gold[b, t]] for b, n in enumerate(lengths) for t in range(n)
    ]
    return float(np.mean(nll))


def test_softmax_loss_is_the_mean_token_nll_over_real_tokens():
    model = tiny_tagger(decoder="softmax")
    features = batch()
    potentials = model(features, training=False).numpy()
    loss = float(model.loss(features, tf.constant(GOLD), training=False))
    expected = softmax_reference(potentials, GOLD, LENGTHS)
    assert loss == pytest.approx(expected, rel=1e-5)

    # Counting padding would give a clearly different figure, so the match above is not luck.
    every = softmax_reference(potentials, GOLD, [WIDTH] * len(LENGTHS))
    assert abs(every - expected) > 1e-2
    # Other tags at padded positions change nothing.
    garbage = np.where(np.arange(WIDTH)[None, :] < np.array(LENGTHS)[:, None], GOLD, 1)
    assert float(model.loss(features, tf.constant(garbage), training=False)) == pytest.approx(
        loss, rel=1e-6
    )


@pytest.mark.parametrize("decoder", ["softmax", "crf"])
def test_lm_weight_adds_weight_times_the_neighbour_lm_loss(decoder):
    model = tiny_tagger(decoder=decoder, lm_weight=0.25, lm_vocab=6, lm_hidden=3)
    features = batch()
    tags = tf.constant(GOLD)
    potentials, states = model._encode(features, training=False)
    mask = tf.sequence_mask(features["length"], WIDTH)
    # The two parts computed apart: the decoder's loss (NumPy for softmax; the CRF's own
    # likelihood, checked by brute force in tests/test_crf.py) and the LM on the first
    # BiLSTM layer's states, which is how Tagger.loss composes them.
    if decoder == "softmax":
        decoder_loss = softmax_reference(potentials.numpy(), GOLD, LENGTHS)
    else:
        likelihood = model.crf.log_likelihood(potentials, tags, features["length"])
        decoder_loss = -float(np.mean(likelihood.numpy()))
    lm_loss = float(model.lm(states, word_ids=features["word_id"], mask=mask))
    assert lm_loss > 1.0  # large enough that a missing or mis-weighted term shows

    losses = {}
    for weight in (0.25, 1.5):
        # lm_weight is read from the config when the loss is computed: same weights, new w.
        model.config = dataclasses.replace(model.config, lm_weight=weight)
        losses[weight] = float(model.loss(features, tags, training=False))
        assert losses[weight] == pytest.approx(decoder_loss + weight * lm_loss, rel=1e-5)
    # Affine in w: the slope between the two weights is the LM loss itself.
    assert (losses[1.5] - losses[0.25]) / (1.5 - 0.25) == pytest.approx(lm_loss, rel=1e-4)


@pytest.mark.parametrize(
    "peak, warmup, rate, decay_steps",
    [(0.01, 5, 0.9, 10), (1e-3, 200, 0.5, 1000), (0.02, 0, 0.8, 7)],
)
def test_learning_rate_schedule_follows_warmup_then_exponential_decay(
    peak, warmup, rate, decay_steps
):
    schedule = WarmupExponentialDecay(peak, warmup, rate, decay_steps)
    steps = sorted(
        {0, 1, max(warmup - 1, 0), warmup, warmup + 1, warmup + decay_steps, warmup + 37, 5000}
    )
    for step in steps:
        if step < warmup:
            expected = peak * (step + 1) / warmup
        else:
            expected = peak * rate ** ((step - warmup) / decay_steps)
        # The optimizer passes its int64 iteration counter; plain ints work too.
        for given in (step, tf.constant(step, tf.int64)):
            assert float(schedule(given)) == pytest.approx(expected, rel=1e-5), step
    # Warm-up ends at the peak and decay starts there: no jump at the switch.
    if warmup:
        assert float(schedule(warmup - 1)) == pytest.approx(peak, rel=1e-6)
    assert float(schedule(warmup)) == pytest.approx(peak, rel=1e-6)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return preprocess_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.mark.parametrize("patience", [1, 3])
def test_training_stops_after_patience_epochs_without_a_better_dev_f1(
    tiny_data, tmp_path, patience
):
    # Adam's step is the learning rate times a bounded factor, so with a rate of 0 the weights
    # (and so the dev predictions, decoded without dropout) are those of initialisation in
    # every epoch: epoch 1 improves on the initial best_f1 of -1, no later epoch can.
    config = config_lib.Config.from_dict(
        {
            "model": {**TINY["model"], "lstm_units": 8},
            "train": {**TINY["train"], "learning_rate": 0.0, "epochs": 8, "patience": patience},
        }
    )
    model_dir = tmp_path / "m"
    result = train(tiny_data / "data", config, model_dir, progress=False)
    history = json.loads((model_dir / "history.json").read_text())

    assert result["epochs_run"] == len(history) == 1 + patience < config.train.epochs
    assert [row["epoch"] for row in history] == list(range(1, 2 + patience))
    assert [row["best"] for row in history] == [True] + [False] * patience
    assert result["best_epoch"] == 1
    assert len({row["dev_entity_f1"] for row in history}) == 1
    assert all(row["learning_rate"] == 0.0 for row in history)
    # The premise itself: the last checkpoint holds the best (epoch 1) checkpoint's weights.
    best = tf.train.load_checkpoint(str(model_dir / "best" / "ckpt"))
    last = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(model_dir / "last")))
    names = [n for n in best.get_variable_to_shape_map() if n.startswith("model/")]
    assert names
    for name in names:
        np.testing.assert_array_equal(best.get_tensor(name), last.get_tensor(name), err_msg=name)
