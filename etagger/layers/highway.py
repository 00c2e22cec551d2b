"""Highway layers (Srivastava et al. 2015)."""

import tensorflow as tf
import tf_keras as keras


class Highway(keras.layers.Layer):
    """A stack of highway layers: ``y = t * g(W_h x + b_h) + (1 - t) * x``,
    ``t = sigmoid(W_t x + b_t)``.

    The transform gate bias starts negative so that at initialisation each layer mostly
    carries its input through, which keeps deep stacks trainable.

    Args:
        num_layers: number of highway layers.
        activation: activation ``g`` of the transform branch.
        transform_bias: initial value of the transform gate bias ``b_t``.

    Call:
        inputs: float ``[B, T, D]``.
        mask: bool ``[B, T]``, True at real tokens.
        training: unused (no dropout), accepted for a uniform call signature.

    Returns:
        float ``[B, T, D]``, zeros at padded tokens.
    """

    def __init__(
        self, num_layers: int = 1, activation: str = "relu", transform_bias: float = -2.0, **kwargs
    ):
        super().__init__(**kwargs)
        self.num_layers = num_layers
        self.activation = activation
        self.transform_bias = transform_bias
        self.transforms: list[keras.layers.Dense] = []
        self.gates: list[keras.layers.Dense] = []

    def build(self, input_shape):
        dim = int(input_shape[-1])
        for i in range(self.num_layers):
            self.transforms.append(
                keras.layers.Dense(dim, activation=self.activation, name=f"transform_{i}")
            )
            self.gates.append(
                keras.layers.Dense(
                    dim,
                    activation="sigmoid",
                    bias_initializer=keras.initializers.Constant(self.transform_bias),
                    name=f"gate_{i}",
                )
            )
        super().build(input_shape)

    def call(self, inputs, mask, training=None):
        x = inputs
        for transform, gate in zip(self.transforms, self.gates):
            t = gate(x)
            x = t * transform(x) + (1.0 - t) * x
        # Position-wise, so padding cannot leak; zeroed only so padded outputs are well defined.
        return x * tf.cast(mask, x.dtype)[..., None]

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_layers=self.num_layers,
            activation=self.activation,
            transform_bias=self.transform_bias,
        )
        return config
