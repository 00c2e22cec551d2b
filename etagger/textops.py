"""The two tensorflow-text ops etagger uses, loaded without importing tensorflow-text.

``import tensorflow_text`` loads its 22 op libraries and its Keras layers (0.3-0.6 s of every
process's start-up); etagger needs the regex split (tokenizer) and the constrained Viterbi
(CRF decoding). Their op libraries are loaded from tensorflow-text's own folder under the
same paths that tensorflow-text itself uses, so importing tensorflow-text later in the same
process still works: TensorFlow loads a library path once and hands back the same ops.

The raw ops return flat values and row splits; callers build ragged tensors themselves
without validation (the splits come from the op), which keeps assertion branches out of
traced and exported graphs.
"""

from __future__ import annotations

import importlib.util
import os
from functools import cache


def _library_path(name: str) -> str:
    spec = importlib.util.find_spec("tensorflow_text")  # finds the package, runs none of it
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("tensorflow-text is not installed")
    return os.path.join(spec.submodule_search_locations[0], "python", "ops", name)


@cache
def _load(name: str):
    import tensorflow as tf

    return tf.load_op_library(_library_path(name))


def load() -> None:
    """Registers both ops (``ConstrainedSequence``, ``RegexSplitWithOffsets``), as loading a
    SavedModel whose graph uses them needs."""
    _load("_constrained_sequence_op.so")
    _load("_regex_split_ops.so")


def regex_split_with_offsets(lines, delim_pattern: str, keep_pattern: str = ""):
    """``tensorflow_text.regex_split_with_offsets`` of a 1-D string tensor, flat: pieces,
    begin and end byte offsets (int64), and the row splits of the pieces per line."""
    return _load("_regex_split_ops.so").regex_split_with_offsets(
        lines, f"({delim_pattern})", f"({keep_pattern})"
    )


def viterbi_constrained_sequence(scores, lengths, allowed_transitions, transition_weights):
    """``tensorflow_text.viterbi_constrained_sequence`` in log space with start and end
    states, flat: the best paths' tag ids (int32) and their row splits (int64)."""
    return _load("_constrained_sequence_op.so").constrained_sequence(
        scores=scores,
        sequence_lengths=lengths,
        allowed_transitions=allowed_transitions,
        transition_weights=transition_weights,
        use_viterbi=True,
        use_log_space=True,
        use_start_and_end_states=True,
    )
