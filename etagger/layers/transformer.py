"""Transformer encoder and a single self-attention block, with explicit padding masks."""

import math

import tensorflow as tf
import tf_keras as keras


def sinusoidal_positions(length, dim: int, dtype=tf.float32):
    """Sinusoidal positional encoding (Vaswani et al. 2017): ``[length, dim]``.

    Even channels ``2i`` hold ``sin(p / 10000^(2i/dim))``, odd channels ``2i+1`` the cosine.
    """
    positions = tf.cast(tf.range(length), tf.float32)[:, None]
    channels = tf.range(dim)
    rates = tf.exp(tf.cast(2 * (channels // 2), tf.float32) * (-math.log(10000.0) / dim))
    angles = positions * rates[None, :]
    encoding = tf.where(channels % 2 == 0, tf.sin(angles), tf.cos(angles))
    return tf.cast(encoding, dtype)


def _attention_mask(mask):
    """``[B, T]`` token mask -> ``[B, T, T]``: query ``i`` may attend key ``j`` iff both are
    real."""
    return mask[:, :, None] & mask[:, None, :]


def _check_heads(model_dim: int, num_heads: int) -> None:
    if model_dim % num_heads:
        raise ValueError(f"model_dim={model_dim} is not divisible by num_heads={num_heads}")


class RelativeSelfAttention(keras.layers.Layer):
    """Multi-head self-attention with a learned bias per head and relative offset.

    ``logits[h, i, j] = q_i . k_j (/ sqrt(d_head) if scale) + bias[h, clip(j - i, -K, K)]``.
    The bias is direction-aware (``j - i`` keeps its sign: "the word before" differs from "the
    word after", which sinusoidal absolute positions blur under attention) and needs no absolute
    positions, as in TENER (Yan et al. 2019), which also found unscaled attention better for NER:
    sharper weights pick out the few neighbours that decide a tag.

    Call: ``inputs`` float ``[B, T, D]``, ``attention_mask`` bool ``[B, T, T]`` (False = masked),
    ``training``. Returns float ``[B, T, model_dim]``.
    """

    def __init__(
        self,
        num_heads: int,
        model_dim: int,
        max_distance: int,
        scale: bool = True,
        dropout: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_heads(model_dim, num_heads)
        if max_distance < 1:
            raise ValueError(f"max_distance must be >= 1, not {max_distance}")
        self.num_heads = num_heads
        self.model_dim = model_dim
        self.max_distance = max_distance
        self.scale = scale
        self.dropout_rate = dropout
        head_dim = model_dim // num_heads

        def project(name):
            return keras.layers.EinsumDense(
                "btd,dhk->bthk", output_shape=(None, num_heads, head_dim), bias_axes="hk", name=name
            )

        self.query, self.key, self.value = project("query"), project("key"), project("value")
        self.output_projection = keras.layers.EinsumDense(
            "bthk,hkd->btd", output_shape=(None, model_dim), bias_axes="d", name="output"
        )
        self.weights_dropout = keras.layers.Dropout(dropout)

    def build(self, input_shape):
        self.relative_bias = self.add_weight(
            name="relative_bias",
            shape=(2 * self.max_distance + 1, self.num_heads),
            initializer="zeros",
        )
        super().build(input_shape)

    def call(self, inputs, attention_mask, training=None):
        q, k, v = self.query(inputs), self.key(inputs), self.value(inputs)
        logits = tf.einsum("bihk,bjhk->bhij", q, k)
        if self.scale:
            logits *= tf.math.rsqrt(tf.cast(tf.shape(q)[-1], logits.dtype))
        positions = tf.range(tf.shape(inputs)[1])
        offsets = tf.clip_by_value(
            positions[None, :] - positions[:, None], -self.max_distance, self.max_distance
        )
        bias = tf.gather(
            tf.cast(self.relative_bias, logits.dtype), offsets + self.max_distance
        )  # [T, T, H]
        logits += tf.transpose(bias, [2, 0, 1])[None]
        # A large negative, not -inf: fully masked (padded) query rows stay finite.
        logits = tf.where(attention_mask[:, None], logits, tf.constant(-1e9, logits.dtype))
        weights = self.weights_dropout(tf.nn.softmax(logits, axis=-1), training=training)
        return self.output_projection(tf.einsum("bhij,bjhk->bihk", weights, v))

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            model_dim=self.model_dim,
            max_distance=self.max_distance,
            scale=self.scale,
            dropout=self.dropout_rate,
        )
        return config


class TransformerEncoder(keras.layers.Layer):
    """Pre-norm Transformer encoder as in the reference tagger, with a convolutional feed-forward.

    ``x = Dense(model_dim)(inputs) + sinusoidal positions``, then per layer, for each sublayer
    (masked self-attention, then feed-forward)::

        x_norm = LayerNorm(x)          # over the last axis only
        y = dropout(sublayer(x_norm))
        x = x_norm + y                 # the reference adds y to the *normalised* input

    The feed-forward is ``conv1d(ff_dim, k, relu) -> conv1d(model_dim, k)`` with 'same' padding
    (``k = ff_kernel_size``, 3 by default); padded positions are zeroed before each convolution
    so a real token's window only ever sees real neighbours or zeros. Attention masks padded
    keys; padded query rows are zeroed.

    Args:
        num_layers: number of encoder layers.
        num_heads: attention heads; must divide ``model_dim``.
        model_dim: width of the encoder.
        ff_dim: inner width of the feed-forward.
        dropout: dropout rate on the input, attention weights and each sublayer output.
        ff_kernel_size: width of the feed-forward convolutions.
        relative_positions: 0 for Keras' attention with absolute sinusoidal positions; K > 0 for
            RelativeSelfAttention with offsets clipped to [-K, K] and no absolute positions.
        scale_attention: divide attention logits by sqrt(head size) (RelativeSelfAttention only;
            Keras' attention always scales).

    Call:
        inputs: float ``[B, T, D]``.
        mask: bool ``[B, T]``, True at real tokens.
        training: Python bool or None.

    Returns:
        float ``[B, T, model_dim]``, zeros at padded tokens.
    """

    def __init__(
        self,
        num_layers: int,
        num_heads: int,
        model_dim: int,
        ff_dim: int,
        dropout: float = 0.0,
        ff_kernel_size: int = 3,
        relative_positions: int = 0,
        scale_attention: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_heads(model_dim, num_heads)
        if relative_positions < 0 or (not scale_attention and not relative_positions):
            raise ValueError(
                f"relative_positions must be >= 0, not {relative_positions}, "
                "and scale_attention=False needs it > 0"
            )
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.model_dim = model_dim
        self.ff_dim = ff_dim
        self.dropout_rate = dropout
        self.ff_kernel_size = ff_kernel_size
        self.relative_positions = relative_positions
        self.scale_attention = scale_attention
        self.input_projection = keras.layers.Dense(model_dim, name="input_projection")
        self.dropout = keras.layers.Dropout(dropout)
        self.attention_norms, self.attentions, self.ff_norms, self.ff_inner, self.ff_outer = (
            [],
            [],
            [],
            [],
            [],
        )
        for i in range(num_layers):
            self.attention_norms.append(
                keras.layers.LayerNormalization(axis=-1, epsilon=1e-6, name=f"attention_norm_{i}")
            )
            if relative_positions:
                attention = RelativeSelfAttention(
                    num_heads,
                    model_dim,
                    relative_positions,
                    scale_attention,
                    dropout=dropout,
                    name=f"attention_{i}",
                )
            else:
                attention = keras.layers.MultiHeadAttention(
                    num_heads,
                    key_dim=model_dim // num_heads,
                    dropout=dropout,
                    name=f"attention_{i}",
                )
            self.attentions.append(attention)
            self.ff_norms.append(
                keras.layers.LayerNormalization(axis=-1, epsilon=1e-6, name=f"ff_norm_{i}")
            )
            self.ff_inner.append(
                keras.layers.Conv1D(
                    ff_dim, ff_kernel_size, padding="same", activation="relu", name=f"ff_inner_{i}"
                )
            )
            self.ff_outer.append(
                keras.layers.Conv1D(model_dim, ff_kernel_size, padding="same", name=f"ff_outer_{i}")
            )

    def call(self, inputs, mask, training=None):
        keep = tf.cast(mask, self.compute_dtype)[..., None]
        attention_mask = _attention_mask(mask)

        x = self.input_projection(inputs)
        if not self.relative_positions:
            x = x + sinusoidal_positions(tf.shape(x)[1], self.model_dim, x.dtype)[None]
        x = self.dropout(x, training=training) * keep

        for i in range(self.num_layers):
            x_norm = self.attention_norms[i](x)
            if self.relative_positions:
                y = self.attentions[i](x_norm, attention_mask=attention_mask, training=training)
            else:
                y = self.attentions[i](
                    x_norm, x_norm, attention_mask=attention_mask, training=training
                )
            # Padded query rows attend to nothing (uniform over masked keys): zero them.
            x = (x_norm + self.dropout(y, training=training)) * keep

            # LayerNorm turns zero rows into its bias, so re-zero padding before each convolution.
            x_norm = self.ff_norms[i](x)
            y = self.ff_inner[i](x_norm * keep)
            y = self.ff_outer[i](y * keep)
            x = (x_norm + self.dropout(y, training=training)) * keep
        return x

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape[:-1]).concatenate([self.model_dim])

    def get_config(self):
        config = super().get_config()
        config.update(
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            model_dim=self.model_dim,
            ff_dim=self.ff_dim,
            dropout=self.dropout_rate,
            ff_kernel_size=self.ff_kernel_size,
            relative_positions=self.relative_positions,
            scale_attention=self.scale_attention,
        )
        return config


class MultiHeadAttentionBlock(keras.layers.Layer):
    """One masked multi-head self-attention with a residual and layer norm (for BiLSTM+MHA).

    ``out = LayerNorm(x + dropout(MHA(x, x)))`` (post-norm, as the reference tagger puts it on
    top of the BiLSTM). The attention has ``num_heads`` heads of size ``model_dim / num_heads``
    and projects back to the input width ``D``, so the residual needs no projection.

    Args:
        num_heads: attention heads; must divide ``model_dim``.
        model_dim: total size of the query/key projections over all heads.
        dropout: dropout rate on the attention weights and the attention output.

    Call:
        inputs: float ``[B, T, D]``.
        mask: bool ``[B, T]``, True at real tokens.
        training: Python bool or None.

    Returns:
        float ``[B, T, D]``, zeros at padded tokens.
    """

    def __init__(self, num_heads: int, model_dim: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        _check_heads(model_dim, num_heads)
        self.num_heads = num_heads
        self.model_dim = model_dim
        self.dropout_rate = dropout
        self.attention = keras.layers.MultiHeadAttention(
            num_heads, key_dim=model_dim // num_heads, dropout=dropout, name="attention"
        )
        self.dropout = keras.layers.Dropout(dropout)
        self.norm = keras.layers.LayerNormalization(axis=-1, epsilon=1e-6, name="norm")

    def call(self, inputs, mask, training=None):
        keep = tf.cast(mask, self.compute_dtype)[..., None]
        y = self.attention(inputs, inputs, attention_mask=_attention_mask(mask), training=training)
        return self.norm(inputs + self.dropout(y, training=training)) * keep

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads, model_dim=self.model_dim, dropout=self.dropout_rate)
        return config
