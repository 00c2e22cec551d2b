"""Checks etagger.crf against a float64 numpy brute force over all K^T paths."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from etagger import crf, ops
from etagger.crf import CRF, allowed_transitions

TOL = 1e-4
IOB2_TAGS = ["<pad>", "O", "B-PER", "I-PER"]
IOBES_TAGS = ["O", "B-X", "I-X", "E-X", "S-X"]
SHAPES = [(3, 1), (3, 2), (3, 4), (4, 3), (4, 4)]  # (K, T)


# ---------------------------------------------------------------- reference
def path_score(pot, path, trans, start, end):
    if not path:
        return 0.0
    score = start[path[0]] + end[path[-1]] + sum(pot[t, y] for t, y in enumerate(path))
    return score + sum(trans[a, b] for a, b in zip(path, path[1:]))


def is_allowed(path, allowed):
    if allowed is None or not path:
        return True
    trans_ok, start_ok, end_ok = allowed
    return (
        start_ok[path[0]]
        and end_ok[path[-1]]
        and all(trans_ok[a, b] for a, b in zip(path, path[1:]))
    )


def brute_force(pot, length, trans, start, end):
    """(log Z, marginals [T, K]) of one row, enumerating every path."""
    paths = list(itertools.product(range(pot.shape[1]), repeat=length))
    scores = np.array([path_score(pot, p, trans, start, end) for p in paths])
    log_norm = np.logaddexp.reduce(scores)
    marginals = np.zeros(pot.shape)
    for path, prob in zip(paths, np.exp(scores - log_norm)):
        marginals[np.arange(length), list(path)] += prob
    return log_norm, marginals


def brute_decode(pot, length, trans, start, end, allowed=None):
    paths = itertools.product(range(pot.shape[1]), repeat=length)
    return max(
        (p for p in paths if is_allowed(p, allowed)),
        key=lambda p: path_score(pot, p, trans, start, end),
    )


def best_paths(pot, lengths, params, allowed):
    """[B, T] best allowed paths, 0-padded: gold tags that obey the constraints."""
    paths = np.zeros(pot.shape[:2], dtype=np.int32)
    for b, length in enumerate(lengths):
        paths[b, :length] = brute_decode(pot[b], length, *params, allowed)
    return paths


def masked_params(params, allowed):
    """The numpy twin of CRF._params: forbidden entries score DISALLOWED."""
    return tuple(np.where(a, p, crf.DISALLOWED) for a, p in zip(allowed, params))


def random_problem(seed, num_tags, max_len, batch=4):
    """Potentials, tags, lengths (always including max_len, 1 and 0) and params."""
    rng = np.random.default_rng(seed)
    pot = rng.normal(size=(batch, max_len, num_tags)) * 2
    tags = rng.integers(0, num_tags, size=(batch, max_len))
    lengths = np.concatenate([[max_len, 1, 0], rng.integers(0, max_len + 1, size=batch - 3)])
    params = tuple(rng.normal(size=s) for s in [(num_tags, num_tags), (num_tags,), (num_tags,)])
    return pot, tags, lengths, params


def tf_args(pot, tags, lengths, params):
    return (
        tf.constant(pot, tf.float32),
        tf.constant(tags, tf.int32),
        tf.constant(lengths, tf.int32),
        *(tf.constant(p, tf.float32) for p in params),
    )


def make_layer(params, tags=None, scheme=None):
    allowed = None if tags is None else allowed_transitions(tags, scheme)
    layer = CRF(len(params[1]), allowed=allowed)
    for var, value in zip(
        [layer.transitions, layer.start_transitions, layer.end_transitions], params
    ):
        var.assign(value)
    return layer, allowed


# ---------------------------------------------------------------- functions
@pytest.mark.parametrize("num_tags,max_len", SHAPES)
def test_score_log_norm_likelihood_marginals_match_brute_force(num_tags, max_len):
    pot, tags, lengths, params = random_problem(num_tags * 10 + max_len, num_tags, max_len)
    p, y, n, *tf_params = tf_args(pot, tags, lengths, params)
    score = crf.crf_sequence_score(p, y, n, *tf_params).numpy()
    log_norm = crf.crf_log_norm(p, n, *tf_params).numpy()
    log_lik = crf.crf_log_likelihood(p, y, n, *tf_params).numpy()
    marginals = crf.crf_marginals(p, n, *tf_params).numpy()
    assert marginals.shape == pot.shape
    # `export --fused-crf`: etagger's one-kernel op does the same arithmetic in the same order.
    np.testing.assert_array_equal(ops.crf_marginals(p, n, *tf_params).numpy(), marginals)
    for b, length in enumerate(lengths):
        ref_score = path_score(pot[b], tuple(tags[b, :length]), *params)
        ref_log_norm, ref_marginals = brute_force(pot[b], length, *params)
        np.testing.assert_allclose(score[b], ref_score, atol=TOL, rtol=TOL)
        np.testing.assert_allclose(log_norm[b], ref_log_norm, atol=TOL, rtol=TOL)
        np.testing.assert_allclose(log_lik[b], ref_score - ref_log_norm, atol=TOL, rtol=TOL)
        np.testing.assert_allclose(marginals[b], ref_marginals, atol=TOL)
        np.testing.assert_allclose(
            marginals[b].sum(-1), (np.arange(max_len) < length).astype(float), atol=TOL
        )


def test_padding_contents_never_matter():
    pot, tags, lengths, params = random_problem(7, 4, 4, batch=6)
    layer, _ = make_layer(params)
    pad = np.arange(4)[None, :] >= lengths[:, None]
    garbled_pot = np.where(pad[..., None], 1e6, pot)
    garbled_pot[pad.nonzero()[0][:2], pad.nonzero()[1][:2]] = np.nan
    garbled_tags = np.where(pad, np.where(np.arange(6)[:, None] % 2, -1, 99), tags)

    def results(p, y):
        p, y, n, *tf_params = tf_args(p, y, lengths, params)
        return [
            crf.crf_sequence_score(p, y, n, *tf_params),
            crf.crf_log_norm(p, n, *tf_params),
            crf.crf_marginals(p, n, *tf_params),
            layer.decode(p, n),
        ]

    for clean, garbled in zip(results(pot, tags), results(garbled_pot, garbled_tags)):
        np.testing.assert_array_equal(clean.numpy(), garbled.numpy())


def test_empty_time_axis():
    pot, tags = np.zeros([2, 0, 3]), np.zeros([2, 0], int)
    p, y, n, *tf_params = tf_args(pot, tags, [0, 0], random_problem(0, 3, 1)[3])
    assert crf.crf_log_likelihood(p, y, n, *tf_params).numpy().tolist() == [0.0, 0.0]
    assert crf.crf_marginals(p, n, *tf_params).shape == (2, 0, 3)


# ---------------------------------------------------------------- constraints
def test_allowed_transitions_iob2():
    tags = ["<pad>", "O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    allowed, start, end = allowed_transitions(tags, "IOB2")
    assert start.tolist() == [False, True, True, False, True, False]
    assert end.tolist() == [False] + [True] * 5
    assert not allowed[0].any() and not allowed[:, 0].any()
    ok = {(i, j) for i in range(1, 6) for j in (1, 2, 4)} | {(2, 3), (3, 3), (4, 5), (5, 5)}
    assert {tuple(ij) for ij in np.argwhere(allowed)} == ok


def test_allowed_transitions_iob1():
    tags = ["O", "I-PER", "B-PER", "I-LOC"]
    allowed, start, end = allowed_transitions(tags, "IOB1")
    assert start.tolist() == [True, True, False, True] and end.all()
    assert allowed[:, [0, 1, 3]].all()  # O and I-X may follow anything
    assert allowed[:, 2].tolist() == [False, True, True, False]  # B-PER only after I-PER/B-PER


def test_allowed_transitions_iobes():
    tags = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC"]
    allowed, start, end = allowed_transitions(tags, "IOBES")
    assert start.tolist() == [True, True, False, False, True, True]
    assert end.tolist() == [True, False, False, True, True, False]
    inside, outside = (
        [False, False, True, True, False, False],
        [True, True, False, False, True, True],
    )
    assert [row.tolist() for row in allowed] == [
        outside,
        inside,
        inside,
        outside,
        outside,
        [False] * 6,
    ]


@pytest.mark.parametrize(
    "tags,scheme", [(["O"], "BILOU"), (["O", "E-PER"], "IOB2"), (["PER"], "IOB1")]
)
def test_allowed_transitions_rejects_bad_input(tags, scheme):
    with pytest.raises(ValueError):
        allowed_transitions(tags, scheme)


# ---------------------------------------------------------------- layer
@pytest.mark.parametrize("tags,scheme", [(None, None), (IOB2_TAGS, "IOB2"), (IOBES_TAGS, "IOBES")])
@pytest.mark.parametrize("max_len", [1, 2, 4])
def test_decode_is_best_allowed_path(tags, scheme, max_len):
    num_tags = 3 if tags is None else len(tags)
    pot, _, lengths, params = random_problem(max_len, num_tags, max_len, batch=8)
    if tags is not None:  # make forbidden moves attractive so the constraints must bite
        params = tuple(p + 3.0 * ~a for p, a in zip(params, allowed_transitions(tags, scheme)))
    layer, allowed = make_layer(params, tags, scheme)
    decoded = layer.decode(tf.constant(pot, tf.float32), tf.constant(lengths, tf.int32)).numpy()
    assert decoded.dtype == np.int32 and decoded.shape == (8, max_len)
    unconstrained_violations = 0
    for b, length in enumerate(lengths):
        assert tuple(decoded[b, :length]) == brute_decode(pot[b], length, *params, allowed)
        assert not decoded[b, length:].any()
        unconstrained_violations += not is_allowed(brute_decode(pot[b], length, *params), allowed)
    if allowed is not None:
        assert unconstrained_violations > 0  # the constraints really changed some answers


@pytest.mark.parametrize("tags,scheme", [(IOB2_TAGS, "IOB2"), (IOBES_TAGS, "IOBES")])
def test_constrained_likelihood_and_marginals(tags, scheme):
    pot, _, lengths, params = random_problem(3, len(tags), 3, batch=5)
    layer, allowed = make_layer(params, tags, scheme)
    effective = masked_params(params, allowed)
    gold = best_paths(pot, lengths, params, allowed)
    log_lik = layer.log_likelihood(pot, gold, lengths).numpy()
    marginals = layer.marginals(pot, lengths).numpy()
    np.testing.assert_array_equal(layer.marginals(pot, lengths, fused=True).numpy(), marginals)
    for b, length in enumerate(lengths):
        ref_log_norm, ref_marginals = brute_force(pot[b], length, *effective)
        ref_score = path_score(pot[b], tuple(gold[b, :length]), *effective)
        np.testing.assert_allclose(log_lik[b], ref_score - ref_log_norm, atol=TOL, rtol=TOL)
        np.testing.assert_allclose(marginals[b], ref_marginals, atol=TOL)
    assert marginals[:, 0, ~allowed[1]].max() < 1e-6  # no mass on tags that cannot start


def test_fused_marginals_op_edge_cases_and_errors():
    params = [tf.zeros(s) for s in [(3, 3), (3,), (3,)]]
    for shape, lengths in (([0, 0, 3], []), ([2, 0, 3], [0, 0]), ([2, 4, 3], [0, 0])):
        out = ops.crf_marginals(tf.zeros(shape), tf.constant(lengths, tf.int32), *params)
        assert out.shape == shape and not np.any(out.numpy())
    with pytest.raises(tf.errors.InvalidArgumentError, match="lengths must lie in"):
        ops.crf_marginals(tf.zeros([1, 2, 3]), tf.constant([3]), *params)
    with pytest.raises(tf.errors.InvalidArgumentError, match="do not match"):
        ops.crf_marginals(tf.zeros([1, 2, 4]), tf.constant([2]), *params)


def test_gradients_are_finite():
    pot, tags, lengths, params = random_problem(11, len(IOB2_TAGS), 4, batch=6)
    layer, _ = make_layer(params, IOB2_TAGS, "IOB2")
    gold = best_paths(pot, lengths, params, layer._allowed)
    potentials = tf.Variable(
        np.where(np.arange(4)[None, :, None] < lengths[:, None, None], pot, np.nan),
        dtype=tf.float32,
    )
    with tf.GradientTape() as tape:
        loss = -tf.reduce_sum(layer.log_likelihood(potentials, gold, lengths))
        loss += tf.reduce_sum(layer.marginals(potentials, lengths) ** 2)
    grads = tape.gradient(loss, [potentials, *layer.trainable_variables])
    assert len(grads) == 4 and all(np.isfinite(g.numpy()).all() for g in grads)
    assert all(np.abs(g.numpy()).sum() > 0 for g in grads)


def test_config_round_trip():
    layer, allowed = make_layer(random_problem(0, 4, 1)[3], IOB2_TAGS, "IOB2")
    clone = CRF.from_config(layer.get_config())
    assert clone.num_tags == 4
    for a, b in zip(clone._allowed, allowed):
        np.testing.assert_array_equal(a, b)


def test_tf_function_and_saved_model_round_trip(tmp_path):
    pot, tags, lengths, params = random_problem(5, len(IOBES_TAGS), 4, batch=4)
    layer, _ = make_layer(params, IOBES_TAGS, "IOBES")
    specs = [
        tf.TensorSpec([None, None, len(IOBES_TAGS)], tf.float32),
        tf.TensorSpec([None], tf.int32),
    ]
    module = tf.Module()
    module.crf = layer
    module.decode = tf.function(layer.decode, input_signature=specs)
    module.marginals = tf.function(layer.marginals, input_signature=specs)
    tf.saved_model.save(module, str(tmp_path))
    loaded = tf.saved_model.load(str(tmp_path))
    batches = [
        (pot, lengths),
        (pot[:1, :1], lengths[1:2]),
        (pot[2:3, :2], lengths[2:3]),
        (pot[:, :0], [0] * 4),
    ]
    for p, n in batches:  # dynamic batch and time sizes, incl. one sentence, T = 1 and T = 0
        p, n = tf.constant(p, tf.float32), tf.constant(n, tf.int32)
        expected = layer.decode(p, n).numpy()
        np.testing.assert_array_equal(module.decode(p, n).numpy(), expected)
        np.testing.assert_array_equal(loaded.decode(p, n).numpy(), expected)
        np.testing.assert_allclose(
            loaded.marginals(p, n).numpy(), layer.marginals(p, n).numpy(), atol=1e-6
        )
