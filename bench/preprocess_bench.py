"""Preprocess wall time and tokens/s on DirectRunner: the CoNLL-2003 splits, then the raw
wikitext-2 files (with the CoNLL vocabularies). Counts sentences and tokens by reading the
written TFRecords back, runs the CoNLL job twice and checks the shards are byte-identical.

Usage: python bench/preprocess_bench.py [--shared ../shared/data] [--out work/bench/preprocess]
Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def preprocess(*args: str) -> float:
    """Runs `cli.py preprocess ARGS` in a fresh process; returns its wall seconds."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "preprocess", *args],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def count_back(out: Path, split: str) -> tuple[int, int]:
    """(sentences, tokens) of a split, read back from its TFRecord shards."""
    from etagger.records import read_records

    sentences = tokens = 0
    for record in read_records(out, split, ["length"]):
        sentences += 1
        tokens += int(record["length"])
    return sentences, tokens


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(ROOT / "work" / "bench" / "preprocess"))
    args = parser.parse_args(argv)
    shared, out = Path(args.shared), Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)

    conll_out, again, wiki_out = out / "conll03", out / "conll03-again", out / "wikitext"
    conll_args = ["--data-dir", str(shared / "conll2003")]
    seconds = preprocess(*conll_args, "--out", str(conll_out))
    preprocess(*conll_args, "--out", str(again))
    shards = sorted(p.name for p in conll_out.glob("*.tfrecord"))
    identical = all(filecmp.cmp(conll_out / name, again / name, shallow=False) for name in shards)
    counts = {split: count_back(conll_out, split) for split in ("train", "dev", "test")}
    stats = json.loads((conll_out / "stats.json").read_text())
    conll_tokens = sum(t for _, t in counts.values())

    wiki_seconds = preprocess(
        "--raw",
        str(shared / "wikitext-2" / "*.txt"),
        "--wikitext",
        "--lenient",
        "--vocab-from",
        str(conll_out),
        "--out",
        str(wiki_out),
    )
    wiki_split = next(p.name.split("-")[0] for p in wiki_out.glob("*.tfrecord"))
    wiki_sentences, wiki_tokens = count_back(wiki_out, wiki_split)

    result = {
        "conll": {
            "wall_seconds": round(seconds, 1),
            "tokens_per_second": round(conll_tokens / seconds),
            "counts": {s: {"sentences": n, "tokens": t} for s, (n, t) in counts.items()},
            "glove_token_coverage": {s: stats[s]["glove_token_coverage"] for s in counts},
            "second_run_byte_identical": identical,
            "shards": len(shards),
        },
        "wikitext": {
            "wall_seconds": round(wiki_seconds, 1),
            "sentences": wiki_sentences,
            "tokens": wiki_tokens,
            "tokens_per_second": round(wiki_tokens / wiki_seconds),
        },
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "load_average": os.getloadavg(),
    }
    c, w = result["conll"], result["wikitext"]
    for split, (n, t) in counts.items():
        print(
            f"conll {split:<5} {n:>7,} sentences {t:>8,} tokens  GloVe coverage {stats[split]['glove_token_coverage']:.4f}"
        )
    print(
        f"conll    wall {c['wall_seconds']:>6.1f} s  {c['tokens_per_second']:>8,} tokens/s  "
        f"second run byte-identical: {identical}"
    )
    print(
        f"wikitext wall {w['wall_seconds']:>6.1f} s  {w['tokens_per_second']:>8,} tokens/s  "
        f"({w['sentences']:,} sentences, {w['tokens']:,} tokens)"
    )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
