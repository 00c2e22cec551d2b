"""Rei (2017)'s language-modelling objective on a BiLSTM's states ("Semi-supervised Multitask
Learning for Sequence Labeling"): predict each token's neighbouring words."""

import tensorflow as tf
import tf_keras as keras

from etagger.features import UNK_ID


class NeighbourWordLM(keras.layers.Layer):
    """Negative log-likelihood of the next word from the forward states and of the previous
    word from the backward states.

    The forward half of a BiLSTM layer's output at token t has read tokens 1..t only, and the
    backward half tokens t..T only, so neither sees the word it predicts. That holds for the
    first layer of a stack alone: a second layer reads both halves of the first.

    Args:
        vocab_size: word ids below it are predicted as themselves, the rest as UNK; word ids
            are ordered by falling training count, so this keeps the most frequent words.
        hidden: units of the tanh layer between the states and each softmax.
        units: LSTM units per direction (the states are ``[B, T, 2 * units]``).

    Call:
        states: float ``[B, T, 2 * units]``, forward then backward halves.
        word_ids: int ``[B, T]``, the real (not word-dropped) ids.
        mask: bool ``[B, T]``, True at real tokens (right-padded).

    Returns:
        scalar: both directions' token losses summed per sentence, averaged over the batch
        (the scale of the CRF's per-sentence loss).
    """

    def __init__(self, vocab_size: int, hidden: int, units: int, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.forward_hidden = keras.layers.Dense(hidden, activation="tanh", name="forward_hidden")
        self.backward_hidden = keras.layers.Dense(hidden, activation="tanh", name="backward_hidden")
        self.forward_words = keras.layers.Dense(vocab_size, name="forward_words")
        self.backward_words = keras.layers.Dense(vocab_size, name="backward_words")
        # Built now, not on the first loss: the optimizer's slots are made before training.
        for dense, fan_in in (
            (self.forward_hidden, units),
            (self.backward_hidden, units),
            (self.forward_words, hidden),
            (self.backward_words, hidden),
        ):
            dense.build(tf.TensorShape([None, None, fan_in]))

    def call(self, states, word_ids, mask):
        forward, backward = tf.split(states, 2, axis=-1)
        targets = tf.where(word_ids < self.vocab_size, word_ids, tf.cast(UNK_ID, word_ids.dtype))
        pairs = tf.cast(mask[:, 1:], states.dtype)  # tokens t and t + 1 both real
        next_word = tf.nn.sparse_softmax_cross_entropy_with_logits(
            targets[:, 1:], self.forward_words(self.forward_hidden(forward[:, :-1]))
        )
        previous_word = tf.nn.sparse_softmax_cross_entropy_with_logits(
            targets[:, :-1], self.backward_words(self.backward_hidden(backward[:, 1:]))
        )
        total = tf.reduce_sum((next_word + previous_word) * pairs)
        return total / tf.cast(tf.shape(states)[0], states.dtype)
