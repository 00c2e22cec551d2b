"""Character-level CNN word features (Ma & Hovy 2016 style, several filter widths)."""

from collections.abc import Sequence

import tensorflow as tf
import tf_keras as keras


class CharCNN(keras.layers.Layer):
    """Embeds the characters of each token, convolves them and max-pools over the real characters.

    Args:
        num_chars: size of the character vocabulary; id 0 is padding.
        char_dim: character embedding size.
        filters: ``(width, count)`` pairs, one convolution per pair.
        dropout: dropout rate on the character embeddings (training only).
        activation: activation after each convolution, ``"relu"`` or ``"tanh"``.

    Call:
        inputs: int32 char ids ``[B, T, C]`` (0 = padding character).
        mask: bool ``[B, T]``, True at real tokens.
        training: Python bool or None.

    Returns:
        float ``[B, T, sum(count for _, count in filters)]``; zeros at padded tokens and at
        tokens that have no characters.
    """

    def __init__(
        self,
        num_chars: int,
        char_dim: int = 30,
        filters: Sequence[tuple[int, int]] = ((3, 50),),
        dropout: float = 0.0,
        activation: str = "relu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if activation not in ("relu", "tanh"):
            raise ValueError(f"activation must be 'relu' or 'tanh', got {activation!r}")
        self.num_chars = num_chars
        self.char_dim = char_dim
        self.filters = [(int(width), int(count)) for width, count in filters]
        self.dropout_rate = dropout
        self.activation = activation
        self.embedding = keras.layers.Embedding(num_chars, char_dim, name="char_embedding")
        self.dropout = keras.layers.Dropout(dropout)
        self.convs = [
            keras.layers.Conv1D(
                count, width, padding="same", activation=activation, name=f"conv_w{width}"
            )
            for width, count in self.filters
        ]
        self.output_dim = sum(count for _, count in self.filters)

    def call(self, inputs, mask, training=None):
        batch, time, chars = tf.unstack(tf.shape(inputs))
        # Fold tokens into the batch: each token is an independent character sequence.
        char_ids = tf.reshape(inputs, [batch * time, chars])
        char_mask = tf.not_equal(char_ids, 0)
        char_mask_f = tf.cast(char_mask, self.compute_dtype)[..., None]

        emb = self.dropout(self.embedding(char_ids), training=training)
        # Zero the padding characters so that a 'same' convolution at the edge of a word sees
        # exactly what it would see with no padding at all (its own zero padding).
        emb = emb * char_mask_f

        pooled = []
        for conv in self.convs:
            features = conv(emb)
            # Max over real characters only: -inf can never win against a real position.
            features = tf.where(
                char_mask[..., None], features, tf.constant(-float("inf"), features.dtype)
            )
            pooled.append(tf.reduce_max(features, axis=1))
        token_features = tf.concat(pooled, axis=-1)

        # A token with no characters (padding token, or empty string) has max = -inf: use zeros.
        has_chars = tf.reduce_any(char_mask, axis=1) & tf.reshape(mask, [-1])
        token_features = tf.where(has_chars[:, None], token_features, tf.zeros_like(token_features))
        return tf.reshape(token_features, [batch, time, self.output_dim])

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape[:2]).concatenate([self.output_dim])

    def get_config(self):
        config = super().get_config()
        config.update(
            num_chars=self.num_chars,
            char_dim=self.char_dim,
            filters=self.filters,
            dropout=self.dropout_rate,
            activation=self.activation,
        )
        return config
