"""One BiLSTM layer at inference, TensorFlow's ops (the plain export) against etagger's fused
LSTM op (``export --fused-lstm``), with float32 and with bfloat16 products (``--bf16``, which
needs a CPU with AVX512-BF16, float32 elsewhere): milliseconds per call on one thread, one
JSON line.

Usage: python bench/lstm_op.py [--dim 110] [--units 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import tensorflow as tf
import tf_keras as keras

from etagger.layers.bilstm import bilstm_fused, bilstm_inference


def mean_ms(fn, calls: int) -> float:
    for _ in range(30):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(1e3 * statistics.mean(times), 3)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dim", type=int, default=110, help="input features per token")
    parser.add_argument("--units", type=int, default=200, help="LSTM units per direction")
    args = parser.parse_args(argv)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    cells = [keras.layers.LSTMCell(args.units) for _ in range(2)]
    for cell in cells:
        cell.build((None, args.dim))
        cell.bias.assign(tf.random.normal(cell.bias.shape, seed=1))
    plain = tf.function(lambda x, n: bilstm_inference(x, n, *cells))
    fused = tf.function(lambda x, n: bilstm_fused(x, n, *cells))
    bf16 = tf.function(lambda x, n: bilstm_fused(x, n, *cells, products="bfloat16"))
    result: dict = {"dim": args.dim, "units": args.units, "threads": 1}
    for batch, tokens in ((1, 13), (1, 40), (64, 30)):
        x = tf.random.normal([batch, tokens, args.dim], seed=2)
        n = tf.fill([batch], tokens)
        calls = 1000 if batch == 1 else 100
        result[f"{batch}x{tokens}"] = {
            "tensorflow_ops_ms": mean_ms(lambda x=x, n=n: plain(x, n), calls),
            "fused_op_ms": mean_ms(lambda x=x, n=n: fused(x, n), calls),
            "fused_op_bf16_ms": mean_ms(lambda x=x, n=n: bf16(x, n), calls),
            "max_abs_difference": float(np.abs(plain(x, n) - fused(x, n)).max()),
            "max_abs_difference_bf16": float(np.abs(plain(x, n) - bf16(x, n)).max()),
        }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
