"""etagger.textops: tensorflow-text's two ops without the package, and the package after them."""

import os
import subprocess
import sys
from pathlib import Path

MODEL = Path(__file__).resolve().parents[1] / "models" / "conll03-bilstm1"

# In a fresh process: the bundled model and the tokenizer run without importing
# tensorflow-text; importing it afterwards still works, and its wrappers give what
# textops gives.
SCRIPT = """
import sys
import numpy as np
import tensorflow as tf
from etagger import textops
from etagger.predictor import Predictor
from etagger.tokenize import Tokenizer

tags = Predictor({model!r})([{{"word": ["John", "Smith", "visited", "Paris"]}}])[0].tags
assert tags == ["B-PER", "I-PER", "O", "B-LOC"], tags
assert Tokenizer().tokenize_line("Mr. Smith's car.")[0].tokens == ("Mr.", "Smith", "'s", "car", ".")
assert "tensorflow_text" not in sys.modules

import tensorflow_text as tf_text

lines = tf.constant(["hello  there, world", "", "a-b"])
pieces, starts, ends = tf_text.regex_split_with_offsets(lines, r"\\s+|,", ",")
flat = textops.regex_split_with_offsets(lines, r"\\s+|,", ",")
for ragged, values in zip((pieces, starts, ends), flat[:3]):
    np.testing.assert_array_equal(ragged.flat_values.numpy(), values.numpy())
np.testing.assert_array_equal(pieces.row_splits.numpy(), flat[3].numpy())

scores = tf.random.stateless_normal([3, 5, 4], seed=[1, 2])
lengths = tf.constant([5, 0, 3])
weights = tf.random.stateless_normal([5, 5], seed=[3, 4])
allowed = tf.constant(np.random.default_rng(0).random([5, 5]) > 0.3)
paths = tf_text.viterbi_constrained_sequence(
    scores, lengths, allowed_transitions=allowed, transition_weights=weights,
    use_log_space=True, use_start_and_end_states=True,
)
values, splits = textops.viterbi_constrained_sequence(scores, lengths, allowed, weights)
np.testing.assert_array_equal(paths.flat_values.numpy(), values.numpy())
np.testing.assert_array_equal(paths.row_splits.numpy(), splits.numpy())
"""


def test_textops_need_no_tensorflow_text_import_and_match_its_wrappers():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(model=str(MODEL))],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_USE_LEGACY_KERAS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
