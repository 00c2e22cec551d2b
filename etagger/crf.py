"""Linear-chain conditional random field (CRF) for sequence tagging.

Notation: B = batch size, T = padded number of time steps, K = number of tags.
A tag path y of length L (its row's entry in `lengths`) scores

    score(y) = start[y_0] + sum_t potentials[t, y_t]
               + sum_{0<t<L} transitions[y_{t-1}, y_t] + end[y_{L-1}]

and the CRF models p(y | x) = exp(score(y)) / Z, Z summing over all K^L paths.
`transitions[i, j]` scores tag i followed by tag j.

Positions t >= L are padding and never affect any result, whatever they hold
(even NaN potentials or out-of-range tags). Lengths must satisfy 0 <= L <= T.
A length-0 row has exactly one (empty) path with score 0, so its sequence
score, log Z and log-likelihood are all 0, its marginals all zero and its
decoded path all padding (0).
"""

import numpy as np
import tensorflow as tf
import tf_keras as keras

from etagger import ops, tagschemes, textops

# Score of transitions forbidden by the tagging scheme. Finite rather than -inf
# so logsumexp and its gradients stay NaN-free, yet exp(-1e4) underflows to 0:
# forbidden paths get no probability mass, so training agrees with decoding.
DISALLOWED = -1e4


def crf_sequence_score(potentials, tags, lengths, transitions, start_transitions, end_transitions):
    """Unnormalised score of given tag paths.

    Args:
      potentials: [B, T, K] float unary scores.
      tags: [B, T] int32 tag paths.
      lengths: [B] int32 real lengths.
      transitions: [K, K] float; start_transitions, end_transitions: [K] float.
    Returns:
      [B] float.
    """
    max_len = tf.shape(tags)[1]
    mask = tf.sequence_mask(lengths, max_len)
    # Padding tags may be anything, even out of range: replace them before
    # gathering, and select (not multiply) so NaN padding potentials cannot leak.
    tags = tf.where(mask, tags, tf.zeros_like(tags))
    zero = tf.zeros([], potentials.dtype)
    unary = tf.where(mask, tf.gather(potentials, tags, batch_dims=2), zero)
    num_tags = tf.shape(transitions)[0]
    pair_scores = tf.gather(tf.reshape(transitions, [-1]), tags[:, :-1] * num_tags + tags[:, 1:])
    binary = tf.where(mask[:, 1:], pair_scores, zero)
    # Slicing [:, :1] and an is-last indicator, instead of indexing [:, 0] or
    # [length - 1], keeps T = 0 and length-0 rows valid: their sums are empty.
    start = tf.where(mask[:, :1], tf.gather(start_transitions, tags[:, :1]), zero)
    is_last = tf.equal(tf.range(max_len)[None, :], lengths[:, None] - 1)
    end = tf.where(is_last, tf.gather(end_transitions, tags), zero)
    return sum(tf.reduce_sum(x, axis=1) for x in (unary, binary, start, end))


def _prepare(potentials, lengths):
    """Zeroes padding potentials and pads the time axis to at least 1 step.

    tf.scan cannot stack an empty time axis when B is dynamic, and one extra
    padding step changes nothing. Returns ([B, max(T, 1), K], mask [B, max(T, 1)]).
    """
    extra = tf.maximum(1 - tf.shape(potentials)[1], 0)
    potentials = tf.pad(potentials, [[0, 0], [0, extra], [0, 0]])
    mask = tf.sequence_mask(lengths, tf.shape(potentials)[1])
    return tf.where(mask[:, :, None], potentials, tf.zeros_like(potentials)), mask


def _forward(potentials, lengths, transitions, start_transitions):
    """Forward log-scores alphas [B, T, K] (T >= 1).

    alphas[b, t, k] = logsumexp of the scores (start and unaries included, end
    excluded) of all prefixes y_0..y_t with y_t = k. Past a row's length the
    last value is carried forward, so alphas[:, -1] is every row's final alpha.
    """

    def step(alpha_prev, elems):
        pot_t, t = elems
        from_prev = tf.reduce_logsumexp(alpha_prev[:, :, None] + transitions[None], axis=1)
        alpha = tf.where(t == 0, start_transitions[None], from_prev) + pot_t
        return tf.where((t < lengths)[:, None], alpha, alpha_prev)

    time_major = tf.transpose(potentials, [1, 0, 2])
    steps = tf.range(tf.shape(time_major)[0])
    alphas = tf.scan(step, (time_major, steps), initializer=tf.zeros_like(time_major[0]))
    return tf.transpose(alphas, [1, 0, 2])


def crf_log_norm(potentials, lengths, transitions, start_transitions, end_transitions):
    """log Z by the forward algorithm in log space; arguments as crf_sequence_score.

    Returns [B] float; 0 for length-0 rows.
    """
    potentials, _ = _prepare(potentials, lengths)
    final_alpha = _forward(potentials, lengths, transitions, start_transitions)[:, -1]
    log_norm = tf.reduce_logsumexp(final_alpha + end_transitions[None], axis=1)
    return tf.where(lengths > 0, log_norm, tf.zeros_like(log_norm))


def crf_log_likelihood(potentials, tags, lengths, transitions, start_transitions, end_transitions):
    """log p(tags | potentials) = score - log Z; arguments as crf_sequence_score. Returns [B]."""
    params = (transitions, start_transitions, end_transitions)
    return crf_sequence_score(potentials, tags, lengths, *params) - crf_log_norm(
        potentials, lengths, *params
    )


def crf_marginals(potentials, lengths, transitions, start_transitions, end_transitions):
    """Posterior marginals p(y_t = k | x) by forward-backward; arguments as crf_log_norm.

    Returns [B, T, K] in the dtype of ``potentials``: rows sum to 1 at real positions, 0 at
    padding.

    Both recursions run in one loop, in probability space and float64: each step is a
    [B, K] x [K, K] matmul on exponentiated scores, rescaled to sum 1 (a marginal is a ratio,
    so the scale factors cancel). This is about twice as fast as two log-space scans, and
    more exact than them in float32 (float64 keeps the exponentials in range for score gaps
    up to ~700).
    """
    max_len = tf.shape(potentials)[1]
    potentials, mask = _prepare(potentials, lengths)

    def scaled_exp(x, axis=None):
        x = tf.cast(x, tf.float64)
        return tf.exp(x - tf.reduce_max(x, axis=axis, keepdims=axis is not None))

    emit = tf.transpose(scaled_exp(potentials, axis=2), [1, 0, 2])  # [T, B, K]
    trans, start, end = (scaled_exp(x) for x in (transitions, start_transitions, end_transitions))
    steps = tf.shape(emit)[0]

    def normalized(x):
        return x / tf.reduce_sum(x, axis=1, keepdims=True)

    def step(i, alpha, beta, alphas, betas):
        # Forward at step i; backward at step t = T - 1 - i (its suffix scores, end included).
        alpha = normalized(tf.where(i == 0, start[None], tf.matmul(alpha, trans)) * emit[i])
        t = steps - 1 - i
        suffix = tf.matmul(emit[tf.minimum(t + 1, steps - 1)] * beta, trans, transpose_b=True)
        beta = tf.where((t + 1 < lengths)[:, None], normalized(suffix), end[None])
        return i + 1, alpha, beta, alphas.write(i, alpha), betas.write(t, beta)

    alpha = tf.zeros(tf.shape(emit)[1:], tf.float64)
    beta = tf.broadcast_to(end, tf.shape(alpha))  # not zeros: 0/0 would poison gradients
    _, _, _, alphas, betas = tf.while_loop(
        lambda i, *_: i < steps,
        step,
        (0, alpha, beta, tf.TensorArray(tf.float64, steps), tf.TensorArray(tf.float64, steps)),
    )
    joint = tf.transpose(alphas.stack() * betas.stack(), [1, 0, 2])
    marginals = tf.cast(joint / tf.reduce_sum(joint, axis=2, keepdims=True), potentials.dtype)
    return tf.where(mask[:, :, None], marginals, tf.zeros_like(marginals))[:, :max_len]


def serving_marginals(potentials, lengths, params, fused: bool):
    """``crf_marginals`` (params: transitions, start, end), or the same numbers from etagger's
    one-kernel op (``fused``: no gradient, about ten times fewer ops a sentence to dispatch)."""
    if fused:
        return ops.crf_marginals(potentials, lengths, *params)
    return crf_marginals(potentials, lengths, *params)


def marginal_kl(targets, marginals, lengths):
    """Per row, the summed token KL divergence sum_t KL(targets_t || marginals_t) of
    [B, T, K] tag distributions (rows of ``targets`` need only be proportional to one);
    padding is ignored. Returns [B] float32.

    The distillation loss: ``marginals`` are the student's (``crf_marginals``, which
    gradients flow through), ``targets`` the teacher's. Marginals below 1e-12 count as
    1e-12, so a tag the teacher gives some mass and the student none costs a finite 27.6
    nats per unit of mass instead of infinity."""
    targets = tf.cast(targets, tf.float32)
    targets = targets / tf.maximum(tf.reduce_sum(targets, axis=2, keepdims=True), 1e-12)
    log_ratio = tf.math.xlogy(targets, targets) - targets * tf.math.log(
        tf.maximum(tf.cast(marginals, tf.float32), 1e-12)
    )
    mask = tf.sequence_mask(lengths, tf.shape(targets)[1])
    per_token = tf.where(mask, tf.reduce_sum(log_ratio, axis=2), 0.0)
    return tf.reduce_sum(per_token, axis=1)


def _parse_tag(tag, scheme):
    """'B-PER' -> ('B', 'PER'), 'O' -> ('O', None), '<pad>'-like -> None."""
    if tag == "O":
        return "O", None
    if tag.startswith("<") and tag.endswith(">"):
        return None
    try:
        prefix, entity = tagschemes.split_tag(tag)
    except ValueError:
        prefix, entity = "", ""
    if not prefix or prefix not in tagschemes.PREFIXES[scheme]:
        raise ValueError(f"tag {tag!r} is not valid in scheme {scheme}")
    return prefix, entity


def _can_follow(prev, cur, scheme):
    """Whether parsed tag `cur` may directly follow parsed tag `prev`."""
    if scheme == "IOB2":  # I-X continues a chunk, so it needs B-X or I-X first.
        return cur[0] != "I" or prev in (("B", cur[1]), ("I", cur[1]))
    if scheme == "IOB1":  # B-X only separates two adjacent chunks of type X.
        return cur[0] != "B" or prev in (("B", cur[1]), ("I", cur[1]))
    if prev[0] in "BI":  # IOBES: an open chunk must continue or end.
        return cur[0] in "IE" and cur[1] == prev[1]
    return cur[0] in "OBS"


def allowed_transitions(tags, scheme):
    """Hard transition constraints of a tagging scheme.

    Args:
      tags: list of K tag strings ('B-PER', 'I-PER', 'E-PER', 'S-PER', 'O');
        special tags like '<pad>' are disallowed everywhere.
      scheme: 'IOB1', 'IOB2' or 'IOBES'.
    Returns:
      (allowed [K, K], allowed_start [K], allowed_end [K]) bool numpy arrays;
      allowed[i, j] says whether tag j may follow tag i.
    """
    if scheme not in tagschemes.PREFIXES:
        raise ValueError(f"unknown tagging scheme {scheme!r}")
    parsed = [_parse_tag(tag, scheme) for tag in tags]
    outside = ("O", None)
    # Starting (ending) a sequence is allowed exactly where following (being
    # followed by) 'O' is: an 'O' leaves no chunk open, just like the boundary.
    allowed = np.array(
        [
            [p is not None and c is not None and _can_follow(p, c, scheme) for c in parsed]
            for p in parsed
        ],
        dtype=bool,
    )
    start = np.array(
        [c is not None and _can_follow(outside, c, scheme) for c in parsed], dtype=bool
    )
    end = np.array([p is not None and _can_follow(p, outside, scheme) for p in parsed], dtype=bool)
    return allowed, start, end


class CRF(keras.layers.Layer):
    """Linear-chain CRF with trainable transition, start and end scores.

    Args:
      num_tags: K.
      allowed: optional (allowed [K, K], allowed_start [K], allowed_end [K])
        bool triple, as returned by `allowed_transitions`. Forbidden entries
        score DISALLOWED in the likelihood and marginals and are hard-masked in
        `decode`. Gold tags must obey the constraints (else log-likelihood ~ -1e4).
    """

    def __init__(self, num_tags, allowed=None, **kwargs):
        super().__init__(**kwargs)
        self.num_tags = num_tags
        self._allowed = (
            None if allowed is None else tuple(np.asarray(a, dtype=bool) for a in allowed)
        )
        self.transitions = self.add_weight(
            name="transitions", shape=[num_tags, num_tags], initializer="zeros"
        )
        self.start_transitions = self.add_weight(
            name="start_transitions", shape=[num_tags], initializer="zeros"
        )
        self.end_transitions = self.add_weight(
            name="end_transitions", shape=[num_tags], initializer="zeros"
        )
        # tf_text's op has one extra state K acting as the start (row K) and
        # the end (column K) of every sequence; entry [K, K] is ignored.
        self.decode_mask = None
        if self._allowed is not None:
            mask = np.ones([num_tags + 1, num_tags + 1], dtype=bool)
            mask[:num_tags, :num_tags], mask[num_tags, :num_tags], mask[:num_tags, num_tags] = (
                self._allowed
            )
            self.decode_mask = mask

    def params(self):
        """(transitions [K, K], start [K], end [K]), scheme-forbidden entries set to DISALLOWED."""
        params = (self.transitions, self.start_transitions, self.end_transitions)
        if self._allowed is None:
            return params
        return tuple(tf.where(a, p, DISALLOWED) for a, p in zip(self._allowed, params))

    def log_likelihood(self, potentials, tags, lengths):
        """potentials [B, T, K], tags [B, T] int32, lengths [B] int32 -> [B] log p(tags)."""
        potentials = tf.cast(potentials, self.transitions.dtype)
        return crf_log_likelihood(potentials, tags, lengths, *self.params())

    def marginals(self, potentials, lengths, fused: bool = False):
        """potentials [B, T, K], lengths [B] int32 -> [B, T, K] posterior marginals
        (``fused``: through etagger's one-kernel op, for serving graphs)."""
        potentials = tf.cast(potentials, self.transitions.dtype)
        return serving_marginals(potentials, lengths, self.params(), fused)

    def decode(self, potentials, lengths):
        """Best allowed paths: potentials [B, T, K], lengths [B] int32 -> [B, T] int32.

        Padding positions are 0. Uses tf_text's Viterbi op (a CPU kernel, log
        space, implicit start/end state); a row with no allowed path at all
        would come back as -1s, which cannot happen when some tag (e.g. 'O')
        may start, follow itself and end.
        """
        return viterbi_decode(potentials, lengths, self.params(), self.decode_mask)

    def get_config(self):
        allowed = None if self._allowed is None else [a.tolist() for a in self._allowed]
        return {**super().get_config(), "num_tags": self.num_tags, "allowed": allowed}


def viterbi_decode(potentials, lengths, params, decode_mask=None):
    """Best paths under (transitions, start, end) ``params``: potentials [B, T, K], lengths
    [B] int32 -> [B, T] int32, 0 at padding. ``decode_mask`` [K+1, K+1] bool hard-forbids
    transitions (row K: the start state, column K: the end state; see `CRF`)."""
    potentials = tf.cast(potentials, tf.float32)  # the op only takes float32
    trans, start, end = (tf.cast(p, tf.float32) for p in params)
    weights = tf.concat(
        [tf.concat([trans, end[:, None]], axis=1), tf.concat([start, [0.0]], axis=0)[None]], axis=0
    )
    allowed = tf.constant([], tf.bool) if decode_mask is None else decode_mask
    paths, splits = textops.viterbi_constrained_sequence(potentials, lengths, allowed, weights)
    # Unvalidated: the splits come from the op (validation would add assertion branches).
    paths = tf.RaggedTensor.from_row_splits(paths, splits, validate=False)
    return paths.to_tensor(default_value=0, shape=tf.shape(potentials)[:2])
