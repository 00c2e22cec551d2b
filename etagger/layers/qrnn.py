"""Bidirectional quasi-recurrent neural network (Bradbury et al. 2016) with fo-pooling."""

import tensorflow as tf
import tf_keras as keras


def fo_pool(z, f, o):
    """fo-pooling over time: ``c_t = f_t * c_{t-1} + (1 - f_t) * z_t``, ``h_t = o_t * c_t``,
    ``c_0 = 0``.

    Args:
        z, f, o: ``[B, T, U]`` candidate (tanh), forget and output gates (sigmoid).

    Returns:
        h: ``[B, T, U]``.
    """
    # Time-major for tf.scan; the input-dependent term is computed for all steps at once so
    # the sequential part is one multiply-add per step.
    f_tm = tf.transpose(f, [1, 0, 2])
    update_tm = tf.transpose((1.0 - f) * z, [1, 0, 2])
    c_tm = tf.scan(
        lambda c_prev, elems: elems[0] * c_prev + elems[1],
        (f_tm, update_tm),
        initializer=tf.zeros_like(f_tm[0]),
    )
    return o * tf.transpose(c_tm, [1, 0, 2])


class _QRNNDirection(keras.layers.Layer):
    """One left-to-right QRNN layer: causal conv -> Z, F, O -> fo-pooling.
    ``[B, T, D] -> [B, T, U]``."""

    def __init__(self, units: int, window: int, zoneout: float, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.zoneout = zoneout
        # 'causal' left-pads by window-1, so step t sees inputs t-window+1..t only: padding that
        # follows the real tokens can never reach them.
        self.conv = keras.layers.Conv1D(3 * units, window, padding="causal", name="gates")

    def call(self, inputs, training=None):
        z, f, o = tf.split(self.conv(inputs), 3, axis=-1)
        z, f, o = tf.tanh(z), tf.sigmoid(f), tf.sigmoid(o)
        if self.zoneout > 0.0:
            # Zoneout on the forget gate as in Salesforce's pytorch-qrnn: during training each unit
            # keeps its previous cell (f = 1) with probability `zoneout`; at inference the update
            # weight 1 - f is scaled by its expectation 1 - zoneout.
            if training:
                keep_update = tf.cast(tf.random.uniform(tf.shape(f)) >= self.zoneout, f.dtype)
                f = 1.0 - (1.0 - f) * keep_update
            else:
                f = 1.0 - (1.0 - f) * (1.0 - self.zoneout)
        return fo_pool(z, f, o)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, window=self.conv.kernel_size[0], zoneout=self.zoneout)
        return config


class BiQRNN(keras.layers.Layer):
    """Stacked bidirectional QRNN with fo-pooling; both directions concatenated.

    The forward direction uses a causal convolution of width ``window``; the backward
    direction runs the same kind of layer (own weights) on each sequence reversed over its real
    length with ``tf.reverse_sequence``, i.e. an anti-causal convolution, and reverses back.
    Padded inputs are zeroed before every layer.

    Args:
        units: hidden units per direction.
        num_layers: number of stacked bidirectional layers.
        window: convolution width.
        dropout: dropout rate on each layer's output (training only).
        zoneout: forget-gate zoneout rate (training only; expectation at inference).

    Call:
        inputs: float ``[B, T, D]``.
        mask: bool ``[B, T]``, True at real tokens (right-padded).
        training: Python bool or None (zoneout needs a Python value, not a tensor).

    Returns:
        float ``[B, T, 2 * units]``, zeros at padded tokens.
    """

    def __init__(
        self,
        units: int,
        num_layers: int = 1,
        window: int = 3,
        dropout: float = 0.0,
        zoneout: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = units
        self.num_layers = num_layers
        self.window = window
        self.dropout_rate = dropout
        self.zoneout = zoneout
        self.forward_layers = [
            _QRNNDirection(units, window, zoneout, name=f"forward_{i}") for i in range(num_layers)
        ]
        self.backward_layers = [
            _QRNNDirection(units, window, zoneout, name=f"backward_{i}") for i in range(num_layers)
        ]
        self.dropout = keras.layers.Dropout(dropout)

    def call(self, inputs, mask, training=None):
        keep = tf.cast(mask, self.compute_dtype)[..., None]
        lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
        # Both convolutions only look back in their own direction and padding is on the right,
        # so padding cannot reach real steps anyway; zeroing it keeps padded steps well defined.
        x = inputs * keep
        for forward, backward in zip(self.forward_layers, self.backward_layers):
            h_fw = forward(x, training=training)
            reversed_x = tf.reverse_sequence(x, lengths, seq_axis=1, batch_axis=0)
            h_bw = tf.reverse_sequence(
                backward(reversed_x, training=training), lengths, seq_axis=1, batch_axis=0
            )
            x = self.dropout(tf.concat([h_fw, h_bw], axis=-1), training=training) * keep
        return x

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape[:-1]).concatenate([2 * self.units])

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            num_layers=self.num_layers,
            window=self.window,
            dropout=self.dropout_rate,
            zoneout=self.zoneout,
        )
        return config
