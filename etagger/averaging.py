"""An exponential moving average of a model's weights (Polyak averaging), swapped in to
evaluate and to save the best checkpoint.

Averaged weights lie in a flatter region than the last step's and usually tag a few
tenths of F1 better; they cost one extra copy of the trainable weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import tensorflow as tf


class WeightAverage(tf.Module):
    """Shadow copies of ``variables`` kept as an exponential moving average.

    Like tf.train.ExponentialMovingAverage with ``num_updates``, the decay is
    ``min(decay, (1 + n) / (10 + n))`` after n updates, so early averages are not
    dominated by the random initial weights. It is a tf.Module: a tf.train.Checkpoint
    that holds it saves and restores the shadows and the update count.
    """

    def __init__(self, variables: Sequence[tf.Variable], decay: float):
        super().__init__(name="weight_average")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.variables_ = list(variables)
        self.shadows = [
            tf.Variable(v, trainable=False, name=v.name.split(":")[0] + "/average")
            for v in self.variables_
        ]
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="updates")

    def update(self) -> None:
        """Moves every shadow towards its variable (call after each optimizer step)."""
        n = tf.cast(self.updates, tf.float32)
        decay = tf.minimum(self.decay, (1.0 + n) / (10.0 + n))
        for shadow, variable in zip(self.shadows, self.variables_):
            shadow.assign_sub((1.0 - tf.cast(decay, shadow.dtype)) * (shadow - variable))
        self.updates.assign_add(1)

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """Within the block the variables hold the averages; their own values come back after."""
        own = [tf.identity(v) for v in self.variables_]
        for variable, shadow in zip(self.variables_, self.shadows):
            variable.assign(shadow)
        try:
            yield
        finally:
            for variable, value in zip(self.variables_, own):
                variable.assign(value)
