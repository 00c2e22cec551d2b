"""End-to-end tokens/s of tag-corpus on one large file, on a local Dask cluster of 1 and
of 2 workers (separate `dask scheduler` / `dask worker` processes on 127.0.0.1, one thread
each), with per-worker counts.

    python bench/scale.py --input work/bench/wiki10x.txt [--workers 1 2] [--format conll]

Each run is a whole `cli.py tag-corpus` process (start-up, census, tagging, publishing);
the cluster is started before the clock starts. Prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import services  # noqa: E402  (the same cluster starter as the tests)

MODEL = str(ROOT / "models" / "conll03-bilstm1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--format", default="conll")
    parser.add_argument("--range-bytes", type=int, default=1 << 20)
    args = parser.parse_args()
    for n in args.workers:
        with services.dask_cluster(workers=n) as cluster:
            out = Path(tempfile.mkdtemp(prefix="etagger-scale-"))
            start = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "cli.py"),
                    "tag-corpus",
                    "--model",
                    MODEL,
                    "--input",
                    args.input,
                    "--output",
                    str(out),
                    "--format",
                    args.format,
                    "--wikitext",
                    "--range-bytes",
                    str(args.range_bytes),
                    "--runner",
                    "DaskRunner",
                    f"--dask_client_address={cluster.address}",
                ],
                check=True,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wall = time.perf_counter() - start
            timing = json.loads((out / "timing.json").read_text())
            print(
                json.dumps(
                    {
                        "dask_workers": n,
                        "tokens": timing["tokens"],
                        "ranges": timing["ranges"],
                        "wall_seconds": round(wall, 2),
                        "tokens_per_second": round(timing["tokens"] / wall),
                        "inference_tokens_per_second": timing["inference_tokens_per_second"],
                        "per_worker": timing["workers"],
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
