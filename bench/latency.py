"""Per-sentence latency of an exported SavedModel, one sentence at a time on one CPU thread.

Usage: python bench/latency.py --model SAVEDMODEL [--conll ../shared/data/conll2003/test.txt]
Prints mean / p50 / p95 / p99 milliseconds per sentence over every sentence of the file
(after a warm-up pass), and a JSON line with the same figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import tensorflow as tf

DEFAULT_CONLL = Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2003" / "test.txt"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--conll", default=str(DEFAULT_CONLL))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--signature", default="serving_default")
    args = parser.parse_args(argv)

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    from etagger.conll import read_conll
    from etagger.predictor import load_exported

    sentences = [list(s.words) for s in read_conll(args.conll)]
    t0 = time.perf_counter()
    serve = load_exported(args.model).signatures[args.signature]
    load_seconds = time.perf_counter() - t0
    inputs = [tf.constant([words]) for words in sentences]
    for x in inputs[:200]:  # warm-up: first calls trace and allocate
        serve(tokens=x)
    times = np.empty(len(inputs))
    for i, x in enumerate(inputs):
        start = time.perf_counter()
        out = serve(tokens=x)
        out["tags"].numpy()
        times[i] = time.perf_counter() - start
    ms = times * 1000
    result = {
        "model": args.model,
        "signature": args.signature,
        "sentences": len(inputs),
        "tokens": sum(map(len, sentences)),
        "threads": args.threads,
        "mean_ms": round(float(ms.mean()), 3),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "load_seconds": round(load_seconds, 2),
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "tensorflow": tf.__version__,
    }
    print(
        f"{result['sentences']} sentences, one at a time, {args.threads} thread(s): "
        f"mean {result['mean_ms']} ms, p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, "
        f"p99 {result['p99_ms']} ms per sentence"
    )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
