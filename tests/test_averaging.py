"""Weight averaging: the moving average, its warm-up decay, swapping and checkpointing."""

import numpy as np
import pytest
import tensorflow as tf

from etagger.averaging import WeightAverage


def test_average_follows_the_decay_rule_and_swaps_back():
    v = tf.Variable([0.0, 2.0])
    average = WeightAverage([v], decay=0.5)
    expected = v.numpy().copy()
    for n, value in enumerate(([1.0, 1.0], [3.0, -1.0], [5.0, 0.0])):
        v.assign(value)
        average.update()
        decay = min(0.5, (1 + n) / (10 + n))
        expected = decay * expected + (1 - decay) * np.array(value)
    np.testing.assert_allclose(average.shadows[0].numpy(), expected, rtol=1e-6)
    with average.swapped_in():
        np.testing.assert_allclose(v.numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(v.numpy(), [5.0, 0.0])


def test_swap_restores_weights_when_the_block_raises():
    v = tf.Variable(1.0)
    average = WeightAverage([v], decay=0.9)
    v.assign(3.0)
    with pytest.raises(RuntimeError):
        with average.swapped_in():
            raise RuntimeError("evaluation failed")
    assert float(v) == 3.0


def test_checkpoint_saves_shadows_and_update_count(tmp_path):
    v = tf.Variable([1.0])
    average = WeightAverage([v], decay=0.9)
    v.assign([4.0])
    average.update()
    path = tf.train.Checkpoint(average=average).write(str(tmp_path / "ckpt"))
    restored = WeightAverage([tf.Variable([0.0])], decay=0.9)
    tf.train.Checkpoint(average=restored).read(path).assert_consumed()
    np.testing.assert_array_equal(restored.shadows[0].numpy(), average.shadows[0].numpy())
    assert int(restored.updates) == 1


def test_decay_must_be_a_fraction():
    with pytest.raises(ValueError):
        WeightAverage([tf.Variable(1.0)], decay=1.0)
