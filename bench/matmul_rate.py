"""This machine's float32 matmul rate through TensorFlow (oneDNN), the yardstick for the
model's efficiency: GFLOP/s of large square matmuls and of the shapes a BiLSTM step runs.

    python bench/matmul_rate.py [--threads 2]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf


def rate(m: int, k: int, n: int, seconds: float = 1.0) -> float:
    """GFLOP/s of repeated [m, k] x [k, n] float32 matmuls inside one tf.function."""
    a, b = tf.random.normal([m, k]), tf.random.normal([k, n])
    repeats = max(1, int(2e10 / (2 * m * k * n)))  # about 20 GFLOP per call

    @tf.function
    def run(a, b):
        return tf.add_n([tf.matmul(a + float(i), b) for i in range(min(repeats, 64))])

    calls = max(1, repeats // 64)
    run(a, b).numpy()
    start = time.perf_counter()
    done = 0
    while time.perf_counter() - start < seconds:
        for _ in range(calls):
            run(a, b)
        run(a, b).numpy()
        done += calls + 1
    return 2 * m * k * n * min(repeats, 64) * done / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=0, help="0: TensorFlow's default")
    args = parser.parse_args()
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    shapes = {
        "square_2048": (2048, 2048, 2048),
        "lstm_step_batch64": (64, 200, 800),
        "lstm_input_batch64": (64, 110, 800),
        "lstm_step_batch1": (1, 200, 800),
    }
    result = {name: round(rate(*shape), 1) for name, shape in shapes.items()}
    print(
        json.dumps({"threads": args.threads or "default", "gflops": result, "cpus": os.cpu_count()})
    )


if __name__ == "__main__":
    main()
