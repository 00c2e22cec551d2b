"""Epoch time of a MiniLM tagger reading stored contextual vectors against running the encoder
in-graph: one training epoch each, one after the other, same config and seed; one JSON line.

    python bench/stored_epoch.py --stored work/conll03-minilm --plain work/conll03 \
        [--config configs/minilm_teacher_crf.json] [--out work/bench/stored-epoch]

``--stored`` is a `preprocess --contextual` output with the config's encoder fingerprint;
``--plain`` the same data without stored vectors (the encoder then runs in every step).
Run it on a quiet machine: the figures are seconds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_epoch(data: str, config: str, model_dir: Path) -> dict:
    shutil.rmtree(model_dir, ignore_errors=True)
    command = [sys.executable, "cli.py", "train", "--data", data, "--config", config]
    command += ["--model-dir", str(model_dir), "--epochs", "1", "--quiet"]
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    row = json.loads((model_dir / "history.json").read_text())[0]
    return {k: row[k] for k in ("train_seconds", "tokens_per_second", "dev_entity_f1")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", required=True)
    parser.add_argument("--plain", required=True)
    parser.add_argument("--config", default="configs/minilm_teacher_crf.json")
    parser.add_argument("--out", default="work/bench/stored-epoch")
    args = parser.parse_args()
    out = ROOT / args.out
    stored = one_epoch(args.stored, args.config, out / "stored")
    in_graph = one_epoch(args.plain, args.config, out / "in-graph")
    speedup = round(in_graph["train_seconds"] / stored["train_seconds"], 2)
    print(json.dumps({"stored": stored, "in_graph": in_graph, "speedup": speedup}))


if __name__ == "__main__":
    main()
