"""Markdown table of finished training runs: test F1 (from `cli.py evaluate` JSON lines) and
training times (from each model's history.json).

Usage: python bench/training_table.py RUN ... [--models work/models] [--logs work/logs]
A run NAME needs work/models/NAME/{config.json,history.json} and work/logs/NAME.test.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def row(name: str, models: Path, logs: Path) -> dict:
    history = json.loads((models / name / "history.json").read_text())
    config = json.loads((models / name / "config.json").read_text())
    test = json.loads((logs / f"{name}.test.json").read_text().strip().splitlines()[-1])
    best = max(history, key=lambda e: e["dev_entity_f1"])
    return {
        "run": name,
        "encoder": config["model"]["encoder"],
        "seed": config["train"]["seed"],
        "epochs": len(history),
        "best_epoch": best["epoch"],
        "dev_f1": 100 * best["dev_entity_f1"],
        "test_f1": 100 * test["entity_f1"],
        "precision": 100 * test["precision"],
        "recall": 100 * test["recall"],
        "epoch_seconds": statistics.median(e["train_seconds"] for e in history),
        "tokens_per_second": statistics.median(e["tokens_per_second"] for e in history),
        "to_best_seconds": best["elapsed_seconds"],
        "total_seconds": history[-1]["elapsed_seconds"],
    }


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--models", default=str(ROOT / "work" / "models"))
    parser.add_argument("--logs", default=str(ROOT / "work" / "logs"))
    args = parser.parse_args(argv)
    rows = [row(name, Path(args.models), Path(args.logs)) for name in args.runs]
    print(
        "| run | encoder | seed | epochs (best) | dev F1 | **test F1** | P / R | s/epoch (median) | train tokens/s | to best | total |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['run']} | {r['encoder']} | {r['seed']} | {r['epochs']} ({r['best_epoch']}) | {r['dev_f1']:.2f} "
            f"| **{r['test_f1']:.2f}** | {r['precision']:.2f} / {r['recall']:.2f} | {r['epoch_seconds']:.1f} "
            f"| {r['tokens_per_second']:,.0f} | {r['to_best_seconds'] / 60:.1f} min | {r['total_seconds'] / 60:.1f} min |"
        )
    return rows


if __name__ == "__main__":
    main()
