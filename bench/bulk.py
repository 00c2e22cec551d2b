"""End-to-end bulk tagging speed: one whole `cli.py tag-corpus` process on the DirectRunner,
timed from outside (interpreter start-up, imports, model loading, census, tagging, publishing).

    python bench/bulk.py [--model models/conll03-bilstm1] [--format jsonl|conll]
                         [--input ../shared/data/wikitext-2/valid.txt ...] [--no-wikitext]
                         [--inflight-calls N]

Prints one JSON line: the process's wall seconds and tokens/s, and the figures of the run's
own timing.json (model-call tokens/s, model load, phase seconds).
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
WIKITEXT = ROOT.parent / "shared" / "data" / "wikitext-2"
MODEL = ROOT / "models" / "conll03-bilstm1"


def bulk(
    model: str, inputs: list[str], fmt: str, wikitext: bool = True, inflight: int | None = None
) -> dict:
    """Runs tag-corpus once into a temporary folder and returns its figures."""
    with tempfile.TemporaryDirectory(prefix="etagger-bulk-") as out:
        command = [
            sys.executable, str(ROOT / "cli.py"), "tag-corpus", "--model", model,
            *(a for path in inputs for a in ("--input", path)), "--output", out, "--format", fmt, "--lenient", "--quiet",
            "--runner", "DirectRunner", *(["--wikitext"] if wikitext else []),
            *(["--inflight-calls", str(inflight)] if inflight else []),
        ]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        timing = json.loads(Path(out, "timing.json").read_text())
    return {
        "tool": "etagger",
        "mode": "bulk",
        "format": fmt,
        "inflight_calls": inflight,
        "inputs": inputs,
        "tokens": timing["tokens"],
        "process_seconds": round(seconds, 3),
        "process_tokens_per_second": round(timing["tokens"] / seconds, 1),
        "pipeline_seconds": timing["wall_seconds"],
        "model_call_tokens_per_second": timing["inference_tokens_per_second"],
        "model_call_seconds": timing["inference_seconds"],
        "model_load_ms": timing["model_load_ms"],
        "phase_seconds": timing["phase_seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(MODEL))
    parser.add_argument("--format", default="jsonl", choices=["jsonl", "conll", "parquet"])
    parser.add_argument(
        "--input", nargs="+", default=[str(WIKITEXT / "valid.txt"), str(WIKITEXT / "test.txt")]
    )
    parser.add_argument("--no-wikitext", action="store_true", help="input is not wikitext")
    parser.add_argument("--inflight-calls", type=int, help="tag-corpus's; default its own")
    args = parser.parse_args()
    result = bulk(args.model, args.input, args.format, not args.no_wikitext, args.inflight_calls)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
