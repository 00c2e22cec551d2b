"""etagger's own TensorFlow ops, for exports made with ``cli.py export --fused-lstm`` and
``--fused-crf``: ``EtaggerLstmSequence``, one LSTM direction in a single kernel
(lstm_sequence.cc), and ``EtaggerCrfMarginals``, a CRF's forward-backward marginals in a
single kernel (crf_marginals.cc).

The library is compiled on the machine that uses it (``python -m etagger.ops``, which
``make install`` runs), against the installed TensorFlow's headers. A SavedModel exported with
them needs the library loaded (``load()``) before ``tf.saved_model.load``; etagger's own loaders
do that.
"""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path
from typing import Literal

SOURCES = [Path(__file__).with_name(name) for name in ("lstm_sequence.cc", "crf_marginals.cc")]
LIBRARY = Path(__file__).with_name("_etagger_ops.so")
LSTM_OP = "EtaggerLstmSequence"
CRF_OP = "EtaggerCrfMarginals"
# x86-64-v3 (AVX2, FMA): x86 servers since about 2015, so that a library built on one
# machine runs on its workers too.
ARCH_FLAGS = ["-march=x86-64-v3"]
# The LSTM op's products: float32, or bfloat16 operands summed in float32 where the CPU has
# AVX512-BF16 and float32 elsewhere (lstm_sequence.cc).
LstmProducts = Literal["float32", "bfloat16"]


def build(out: Path = LIBRARY) -> Path:
    """Compiles the ops' sources into ``out`` (a temporary name, then renamed)."""
    import tensorflow as tf

    staging = out.with_suffix(".so.tmp")
    command = [
        "g++", "-shared", "-fPIC", "-O3", *ARCH_FLAGS, "-w", *map(str, SOURCES), "-o", str(staging),
        *tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags(),
    ]  # fmt: skip
    subprocess.run(command, check=True)
    staging.replace(out)
    return out


@cache
def load():
    """The loaded op library (once per process); a one-line error when it was not built."""
    import tensorflow as tf

    if not LIBRARY.exists():
        raise FileNotFoundError(
            f"{LIBRARY}: etagger's ops are not built; build them with `python -m etagger.ops`"
        )
    return tf.load_op_library(str(LIBRARY))


def load_if_needed(meta: dict) -> None:
    """Loads the library when the exported model described by ``meta`` (its etagger.json)
    was exported with etagger's ops."""
    if meta.get("ops"):
        load()


def lstm_sequence(
    x, lengths, kernel, recurrent, bias, reverse: bool = False, products: LstmProducts = "float32"
):
    """One LSTM direction: x [B, T, D] float32, lengths [B] int32 (right padding), a Keras
    LSTMCell's kernel [D, 4U], recurrent kernel [U, 4U] and bias [4U] -> hidden states
    [B, T, U], zeros at padding. ``reverse``: each sentence read from its last real token.
    ``products="bfloat16"``: on CPUs with AVX512-BF16, both matrix products take
    bfloat16-rounded operands, at twice the multiply-adds per cycle (float32 elsewhere);
    gates and states stay float32."""
    return load().etagger_lstm_sequence(
        x, lengths, kernel, recurrent, bias, reverse=reverse, bf16=products == "bfloat16"
    )


def crf_marginals(potentials, lengths, transitions, start_transitions, end_transitions):
    """``etagger.crf.crf_marginals`` in one op (no gradient: for serving): potentials
    [B, T, K] float32, lengths [B] int32, the CRF's [K, K], [K], [K] -> marginals [B, T, K]
    float32, zeros at padding."""
    return load().etagger_crf_marginals(
        potentials, lengths, transitions, start_transitions, end_transitions
    )
