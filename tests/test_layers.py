"""Tests for etagger.layers: shapes, explicit masking (padding never leaks), gradients, tf.function."""

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from etagger.layers.bilstm import BiLSTMEncoder
from etagger.layers.char_cnn import CharCNN
from etagger.layers.dropout import sequence_dropout
from etagger.layers.highway import Highway
from etagger.layers.qrnn import BiQRNN, fo_pool
from etagger.layers.transformer import (
    MultiHeadAttentionBlock,
    RelativeSelfAttention,
    TransformerEncoder,
    sinusoidal_positions,
)
from tests.fixtures import BF16_KERNELS

DIM = 6  # feature size of float inputs
CHARS = 5  # characters per token of CharCNN inputs
NUM_CHARS = 20
ATOL = 1e-5


@dataclass
class Case:
    name: str
    make_layer: Callable[[], keras.layers.Layer]
    out_dim: int
    char_ids: bool = False  # inputs are [B, T, C] int32 char ids instead of [B, T, DIM] floats

    def inputs(self, rng, lengths, time):
        """A batch with zeros (padding ids) after each row's length, and its mask."""
        mask = np.arange(time)[None, :] < np.asarray(lengths)[:, None]
        if self.char_ids:
            ids = rng.integers(1, NUM_CHARS, size=(len(lengths), time, CHARS))
            # Each token gets 1..CHARS characters followed by padding characters.
            word_len = rng.integers(1, CHARS + 1, size=(len(lengths), time))
            ids = ids * (np.arange(CHARS)[None, None, :] < word_len[..., None]) * mask[..., None]
            return tf.constant(ids, tf.int32), tf.constant(mask)
        x = rng.normal(size=(len(lengths), time, DIM)) * mask[..., None]
        return tf.constant(x, tf.float32), tf.constant(mask)

    def perturb_padding(self, rng, inputs, mask):
        """Replaces everything at padded tokens by random non-padding values."""
        pad = ~mask.numpy()
        values = inputs.numpy().copy()
        if self.char_ids:
            values[pad] = rng.integers(1, NUM_CHARS, size=values[pad].shape)
        else:
            values[pad] = rng.normal(size=values[pad].shape) * 10.0
        return tf.constant(values, inputs.dtype)

    def signature(self):
        if self.char_ids:
            inputs = tf.TensorSpec([None, None, None], tf.int32)
        else:
            inputs = tf.TensorSpec([None, None, DIM], tf.float32)
        return [inputs, tf.TensorSpec([None, None], tf.bool)]


CASES = [
    Case(
        "char_cnn",
        lambda: CharCNN(NUM_CHARS, char_dim=5, filters=[(2, 3), (3, 4)], dropout=0.1),
        7,
        char_ids=True,
    ),
    Case("highway", lambda: Highway(2), DIM),
    Case("bilstm", lambda: BiLSTMEncoder(4, num_layers=2, dropout=0.1), 8),
    Case(
        "transformer",
        lambda: TransformerEncoder(2, num_heads=2, model_dim=8, ff_dim=12, dropout=0.1),
        8,
    ),
    Case(
        "transformer_relative",
        lambda: TransformerEncoder(
            2,
            num_heads=2,
            model_dim=8,
            ff_dim=12,
            dropout=0.1,
            relative_positions=2,
            scale_attention=False,
        ),
        8,
    ),
    Case("mha_block", lambda: MultiHeadAttentionBlock(num_heads=2, model_dim=8, dropout=0.1), DIM),
    Case("qrnn", lambda: BiQRNN(4, num_layers=2, window=3, dropout=0.1, zoneout=0.1), 8),
]
by_case = pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])


@pytest.fixture
def rng():
    tf.random.set_seed(0)
    return np.random.default_rng(0)


def randomized(case, rng, x, mask):
    """A built layer whose every weight is random.

    Zero-initialised biases (LayerNorm beta, conv bias) would hide leaks: LayerNorm of a zeroed
    padding row is exactly its beta, so with beta = 0 a missing re-zeroing goes unnoticed.
    """
    layer = case.make_layer()
    layer(x, mask=mask, training=False)
    for var in layer.weights:
        var.assign(rng.normal(scale=0.5, size=var.shape))
    return layer


def real(outputs, mask):
    """Outputs at real tokens only, as a flat [N, H] array."""
    return outputs.numpy()[mask.numpy()]


@by_case
def test_output_shape_and_zero_padding(case, rng):
    x, mask = case.inputs(rng, [5, 2, 3], 5)
    layer = randomized(case, rng, x, mask)
    out = layer(x, mask=mask, training=False)
    assert out.shape == (3, 5, case.out_dim)
    assert layer.compute_output_shape(x.shape) == out.shape
    np.testing.assert_array_equal(out.numpy()[~mask.numpy()], 0.0)
    assert np.isfinite(out.numpy()).all()


@by_case
def test_values_at_padded_positions_do_not_leak(case, rng):
    x, mask = case.inputs(rng, [5, 2, 3], 5)
    layer = randomized(case, rng, x, mask)
    clean = layer(x, mask=mask, training=False)
    noisy = layer(case.perturb_padding(rng, x, mask), mask=mask, training=False)
    np.testing.assert_allclose(real(noisy, mask), real(clean, mask), atol=ATOL)
    np.testing.assert_array_equal(noisy.numpy()[~mask.numpy()], 0.0)


@by_case
def test_appended_padding_does_not_change_real_outputs(case, rng):
    x, mask = case.inputs(rng, [4, 2, 3], 4)
    layer = randomized(case, rng, x, mask)
    short = layer(x, mask=mask, training=False)
    x_long = tf.pad(x, [[0, 0], [0, 3]] + [[0, 0]] * (len(x.shape) - 2))
    mask_long = tf.pad(mask, [[0, 0], [0, 3]])
    long = layer(x_long, mask=mask_long, training=False)
    np.testing.assert_allclose(long.numpy()[:, :4][mask.numpy()], real(short, mask), atol=ATOL)


@by_case
def test_length_one_row_matches_running_it_alone(case, rng):
    x, mask = case.inputs(rng, [5, 1, 3], 5)
    layer = randomized(case, rng, x, mask)
    batched = layer(x, mask=mask, training=False)
    alone = layer(x[1:2, :1], mask=mask[1:2, :1], training=False)
    np.testing.assert_allclose(batched.numpy()[1, :1], alone.numpy()[0], atol=ATOL)
    np.testing.assert_array_equal(batched.numpy()[1, 1:], 0.0)


@by_case
def test_gradients_reach_every_weight_and_no_padded_input(case, rng):
    x, mask = case.inputs(rng, [5, 2, 3], 5)
    layer = randomized(case, rng, x, mask)
    weights = tf.constant(rng.normal(size=(3, 5, case.out_dim)), tf.float32)
    with tf.GradientTape() as tape:
        if not case.char_ids:
            tape.watch(x)
        out = layer(x, mask=mask, training=True)
        loss = tf.reduce_sum(out * weights * tf.cast(mask, tf.float32)[..., None])
    variables = layer.trainable_variables
    sources = variables if case.char_ids else variables + [x]
    grads = tape.gradient(loss, sources)
    assert variables
    for var, grad in zip(variables, grads):
        assert grad is not None, var.name
        grad = tf.convert_to_tensor(grad).numpy()
        assert np.isfinite(grad).all(), var.name
        assert np.abs(grad).sum() > 0, var.name
    if not case.char_ids:
        # Outputs at real tokens must not depend on the inputs at padded tokens.
        np.testing.assert_array_equal(grads[-1].numpy()[~mask.numpy()], 0.0)


@by_case
def test_works_in_tf_function_with_dynamic_shapes(case, rng):
    layer = case.make_layer()
    fn = tf.function(
        lambda x, m: layer(x, mask=m, training=False), input_signature=case.signature()
    )
    traces = []
    for lengths, time in [([3, 1], 3), ([6, 2, 4], 6)]:
        x, mask = case.inputs(rng, lengths, time)
        np.testing.assert_allclose(
            fn(x, mask).numpy(), layer(x, mask=mask, training=False).numpy(), atol=ATOL
        )
        traces.append(fn.experimental_get_tracing_count())
    # The first call may trace twice (variables are created during the first trace); a new
    # batch size and length must not trace again.
    assert traces[1] == traces[0]


@by_case
def test_config_round_trip(case):
    layer = case.make_layer()
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config


def test_char_cnn_ignores_padding_characters(rng):
    case = CASES[0]
    x, mask = case.inputs(rng, [4, 2], 4)
    layer = randomized(case, rng, x, mask)
    # A large conv bias makes the convolution output at padding characters large, so they would
    # win the max-pool if they were not masked out.
    for conv in layer.convs:
        conv.bias.assign(tf.fill(conv.bias.shape, 5.0))
    out = layer(tf.pad(x, [[0, 0], [0, 0], [0, 3]]), mask=mask, training=False).numpy()
    ids = x.numpy()
    for b, t in zip(*np.nonzero(mask.numpy())):
        word = ids[b, t][ids[b, t] != 0]
        alone = layer(tf.constant(word[None, None]), mask=tf.constant([[True]]), training=False)
        np.testing.assert_allclose(out[b, t], alone.numpy()[0, 0], atol=ATOL)


def test_char_cnn_token_without_characters_gives_zeros(rng):
    layer = CASES[0].make_layer()
    ids = tf.constant([[[3, 4, 0], [0, 0, 0]]], tf.int32)  # the second token is real but empty
    out = layer(ids, mask=tf.constant([[True, True]]), training=False)
    np.testing.assert_array_equal(out.numpy()[0, 1], 0.0)
    assert np.abs(out.numpy()[0, 0]).sum() > 0


def test_bilstm_backward_direction_starts_at_last_real_token(rng):
    encoder = BiLSTMEncoder(4)
    x, mask = CASES[2].inputs(rng, [5, 2, 3], 5)
    out = encoder(x, mask=mask, training=False)
    # Reference: a plain forward LSTM with the backward weights on each sequence reversed per length.
    backward = keras.layers.LSTM(4, return_sequences=True)
    lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
    reversed_x = tf.reverse_sequence(x, lengths, seq_axis=1, batch_axis=0)
    backward(reversed_x)
    backward.set_weights(encoder.rnns[0].backward_layer.get_weights())
    expected = tf.reverse_sequence(
        backward(reversed_x, mask=mask), lengths, seq_axis=1, batch_axis=0
    )
    np.testing.assert_allclose(real(out, mask)[:, 4:], real(expected, mask), atol=ATOL)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_bilstm_serving_path_is_keras_bit_for_bit(rng, num_layers):
    # Exported models run BiLSTMEncoder.serve (no per-step masks); Keras's masked
    # Bidirectional(LSTM) is the reference, to the last bit at real tokens.
    encoder = BiLSTMEncoder(4, num_layers=num_layers)
    x, mask = CASES[2].inputs(rng, [5, 2, 0, 1, 3], 5)
    x = tf.where(mask[..., None], x, 1e6)  # padding contents must not matter
    expected = encoder(x, mask=mask, training=False)
    lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
    served = tf.function(encoder.serve)(x, lengths)
    np.testing.assert_array_equal(real(served, mask), real(expected, mask))
    np.testing.assert_array_equal(served.numpy()[~mask.numpy()], 0.0)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_bilstm_fused_serving_path_equals_keras_to_float32_rounding(rng, num_layers):
    # `export --fused-lstm`: etagger's one-kernel op (etagger.ops) against Keras's masked
    # Bidirectional(LSTM), with padding of garbage and an empty row.
    encoder = BiLSTMEncoder(8, num_layers=num_layers)
    x, mask = CASES[2].inputs(rng, [5, 2, 0, 1, 3], 5)
    x = tf.where(mask[..., None], x, 1e6)
    encoder(x, mask=mask)  # builds the weights
    for weight in encoder.weights:  # non-zero biases, so that every term counts
        weight.assign(tf.random.normal(weight.shape, seed=int(rng.integers(1 << 30))))
    expected = encoder(x, mask=mask, training=False)
    lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
    served = tf.function(lambda x, n: encoder.serve(x, n, fused="float32"))(x, lengths)
    np.testing.assert_allclose(real(served, mask), real(expected, mask), atol=1e-6)
    np.testing.assert_array_equal(served.numpy()[~mask.numpy()], 0.0)
    # An empty batch, and zero-length sentences only.
    for shape, n in (([0, 0, DIM], []), ([2, 3, DIM], [0, 0])):
        empty = encoder.serve(tf.zeros(shape), tf.constant(n, tf.int32), fused="float32")
        assert empty.shape == (shape[0], shape[1], 16) and not np.any(empty.numpy())


def round_to_bf16(a):
    """float32 values rounded to bfloat16 (to nearest, ties to even), as float32."""
    bits = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return rounded.astype(np.uint32).view(np.float32)


def lstm_reference(x, lengths, kernel, recurrent, bias, reverse, bf16):
    """One Keras-LSTMCell direction in numpy, products in float64 of the (rounded) operands."""
    r = round_to_bf16 if bf16 else (lambda a: a)
    batch, steps, units = x.shape[0], x.shape[1], recurrent.shape[0]
    projected = np.einsum("btd,dn->btn", r(x), r(kernel), dtype=np.float64).astype(np.float32)
    projected += bias
    h, c = np.zeros((batch, units), np.float32), np.zeros((batch, units), np.float32)
    out = np.zeros((batch, steps, units), np.float32)
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    for s in range(steps):
        z = (r(h).astype(np.float64) @ r(recurrent)).astype(np.float32)
        for b in range(batch):
            if s < lengths[b]:
                t = lengths[b] - 1 - s if reverse else s
                g = np.split(z[b] + projected[b, t], 4)
                c[b] = sigmoid(g[1]) * c[b] + sigmoid(g[0]) * np.tanh(g[2])
                h[b] = out[b, t] = sigmoid(g[3]) * np.tanh(c[b])
    return out


BF16_CASE = """
import numpy as np, sys
from etagger import ops
rng = np.random.default_rng(5)
x = rng.normal(size=(6, 5, 7)).astype(np.float32)  # odd width: a zero pads the last pair
lengths = np.array([5, 2, 0, 1, 3, 2], np.int32)  # six rows: a tile of four and one of two
weights = [(rng.normal(size=shape) * 0.5).astype(np.float32) for shape in ((7, 36), (9, 36), (36,))]
np.savez(sys.argv[1], x=x, lengths=lengths, kernel=weights[0], recurrent=weights[1], bias=weights[2],
         **{f"{direction}_{products}": ops.lstm_sequence(x, lengths, *weights, reverse=direction == "backward",
                                                         products=products).numpy()
            for direction in ("forward", "backward") for products in ("float32", "bfloat16")})
"""


@pytest.mark.parametrize("kernels", ["native", "portable"])
def test_fused_lstm_op_bf16_products_round_their_operands(tmp_path, kernels):
    # `export --fused-lstm --bf16`: where the CPU has AVX512-BF16, the op's states are the
    # numpy reference's with bfloat16-rounded operands; elsewhere (or with
    # ETAGGER_PORTABLE_KERNELS=1) its products stay float32. Past the first steps a state may
    # round to the neighbouring bfloat16 in one computation and not in the other, so later
    # steps agree to that rounding's effect, not to float32's.
    portable = kernels == "portable" or not BF16_KERNELS
    env = {**os.environ, **({"ETAGGER_PORTABLE_KERNELS": "1"} if kernels == "portable" else {})}
    out = tmp_path / "out.npz"
    subprocess.run([sys.executable, "-c", BF16_CASE, str(out)], check=True, env=env)
    got = np.load(out)
    args = [got[k] for k in ("x", "lengths", "kernel", "recurrent", "bias")]
    for direction in ("forward", "backward"):
        reverse = direction == "backward"
        float32 = lstm_reference(*args, reverse=reverse, bf16=False)
        np.testing.assert_allclose(got[f"{direction}_float32"], float32, atol=1e-5)
        served = got[f"{direction}_bfloat16"]
        if portable:
            np.testing.assert_array_equal(served, got[f"{direction}_float32"])
            continue
        bf16 = lstm_reference(*args, reverse=reverse, bf16=True)
        t, n = np.arange(5)[None, :], args[1][:, None]
        step = n - 1 - t if reverse else t + 0 * n  # the step at which position t is read
        early = (step < 2) & (t < n)
        np.testing.assert_allclose(served[early], bf16[early], atol=1e-5)
        np.testing.assert_allclose(served, bf16, atol=2e-2)
        assert np.abs(served - float32).max() > 1e-4  # the rounding is real
        assert not np.any(served[t + 0 * n >= n])  # zeros at padding


def test_fused_lstm_op_rejects_lengths_beyond_the_sentences():
    from etagger import ops

    weights = tf.zeros([DIM, 16]), tf.zeros([4, 16]), tf.zeros([16])
    with pytest.raises(tf.errors.InvalidArgumentError, match="lengths must lie in"):
        ops.lstm_sequence(tf.zeros([1, 3, DIM]), tf.constant([4]), *weights)


def test_bilstm_drops_out_between_layers_only(rng):
    # The tagger drops the encoder's output itself: a second dropout here would drop it twice.
    x, mask = CASES[2].inputs(rng, [5, 2, 3], 5)
    single = BiLSTMEncoder(4, num_layers=1, dropout=0.9)
    np.testing.assert_array_equal(
        single(x, mask=mask, training=True), single(x, mask=mask, training=False)
    )
    stacked = BiLSTMEncoder(4, num_layers=2, dropout=0.9)
    assert not np.allclose(
        stacked(x, mask=mask, training=True), stacked(x, mask=mask, training=False)
    )


def test_variational_dropout_drops_the_same_features_at_every_step():
    x = tf.ones([3, 7, 50])
    dropped = sequence_dropout(0.5, variational=True)(x, training=True).numpy()
    np.testing.assert_array_equal(dropped, np.repeat(dropped[:, :1], 7, axis=1))
    assert 0 < (dropped == 0).mean() < 1
    per_token = sequence_dropout(0.5)(x, training=True).numpy()
    assert not np.array_equal(per_token, np.repeat(per_token[:, :1], 7, axis=1))


def test_fo_pool_matches_the_recurrence(rng):
    z, f, o = (tf.constant(rng.uniform(size=(2, 4, 3)), tf.float32) for _ in range(3))
    c = np.zeros((2, 3))
    expected = []
    for t in range(4):
        c = f.numpy()[:, t] * c + (1 - f.numpy()[:, t]) * z.numpy()[:, t]
        expected.append(o.numpy()[:, t] * c)
    np.testing.assert_allclose(fo_pool(z, f, o).numpy(), np.stack(expected, axis=1), atol=1e-6)


def test_qrnn_directions_are_causal_and_anti_causal(rng):
    qrnn = BiQRNN(4, num_layers=1)
    x, mask = CASES[5].inputs(rng, [6], 6)
    out = qrnn(x, mask=mask).numpy()
    changed = x.numpy().copy()
    changed[0, 3] += 1.0
    out_changed = qrnn(tf.constant(changed), mask=mask).numpy()
    np.testing.assert_allclose(
        out_changed[0, :3, :4], out[0, :3, :4], atol=ATOL
    )  # forward: past only
    np.testing.assert_allclose(
        out_changed[0, 4:, 4:], out[0, 4:, 4:], atol=ATOL
    )  # backward: future only
    assert not np.allclose(out_changed[0, 3:, :4], out[0, 3:, :4])
    assert not np.allclose(out_changed[0, :4, 4:], out[0, :4, 4:])


def test_sinusoidal_positions():
    pe = sinusoidal_positions(5, 6).numpy()
    pos, i = np.arange(5)[:, None], np.arange(6)[None, :]
    angles = pos / np.power(10000.0, 2 * (i // 2) / 6)
    np.testing.assert_allclose(pe, np.where(i % 2 == 0, np.sin(angles), np.cos(angles)), atol=1e-6)


@pytest.mark.parametrize("relative_positions, scale", [(-1, True), (0, False)])
def test_transformer_rejects_bad_position_settings(relative_positions, scale):
    with pytest.raises(ValueError, match="relative_positions"):
        TransformerEncoder(
            1,
            num_heads=2,
            model_dim=8,
            ff_dim=8,
            relative_positions=relative_positions,
            scale_attention=scale,
        )


@pytest.mark.parametrize("scale", [True, False])
def test_relative_attention_matches_a_numpy_reference(rng, scale):
    heads, dim, k_max, time = 2, 4, 2, 6  # time > k_max + 1: offsets get clipped
    x = rng.normal(size=(2, time, DIM)).astype(np.float32)
    mask = np.arange(time)[None, :] < np.array([[time], [4]])
    attention_mask = tf.constant(mask[:, :, None] & mask[:, None, :])
    layer = RelativeSelfAttention(heads, dim, k_max, scale=scale)
    layer(tf.constant(x), attention_mask=attention_mask)
    for var in layer.weights:
        var.assign(rng.normal(scale=0.5, size=var.shape))
    out = layer(tf.constant(x), attention_mask=attention_mask).numpy()

    q, k, v = (
        np.einsum("btd,dhk->bthk", x, p.kernel.numpy()) + p.bias.numpy()
        for p in (layer.query, layer.key, layer.value)
    )
    bias = layer.relative_bias.numpy()
    out_kernel, out_bias = (
        layer.output_projection.kernel.numpy(),
        layer.output_projection.bias.numpy(),
    )
    for b in range(2):
        keys = np.flatnonzero(mask[b])
        for i in keys:
            heads_out = []
            for h in range(heads):
                logits = q[b, i, h] @ k[b, keys, h].T / (np.sqrt(dim // heads) if scale else 1.0)
                logits += bias[
                    np.clip(keys - i, -k_max, k_max) + k_max, h
                ]  # offset j - i: direction-aware
                p = np.exp(logits - logits.max())
                p /= p.sum()
                heads_out.append(p @ v[b, keys, h])
            expected = out_bias + sum(o @ out_kernel[h] for h, o in enumerate(heads_out))
            np.testing.assert_allclose(out[b, i], expected, atol=1e-4)
