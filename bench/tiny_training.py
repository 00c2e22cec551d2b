"""Times the test suite's tiny training (tests/fixtures.TINY on the 40-sentence fixture).

Nearly all of it is TensorFlow tracing the training step and the decoder, which is also what
every epoch-one of a real training pays before its first step: run it to see what a change
to the traced functions costs.

    python bench/tiny_training.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etagger import config as config_lib
from etagger.train import train
from tests.fixtures import TINY, preprocess_tiny


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    root = preprocess_tiny(Path(tempfile.mkdtemp(prefix="tiny-training-")))
    config = config_lib.Config.from_dict(TINY)
    totals = []
    for run in range(args.runs):
        model_dir = root / f"model{run}"
        start = time.perf_counter()
        train(root / "data", config, model_dir, progress=False)
        totals.append(time.perf_counter() - start)
        history = json.loads((model_dir / "history.json").read_text())
        print(
            json.dumps(
                {
                    "run": run + 1,
                    "seconds": round(totals[-1], 1),
                    "epoch_train_seconds": [r["train_seconds"] for r in history],
                }
            ),
            flush=True,
        )
    print(json.dumps({"runs": args.runs, "median_seconds": round(statistics.median(totals), 1)}))


if __name__ == "__main__":
    main()
