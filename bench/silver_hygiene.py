"""Shows by hashing that no dev or test sentence is in the silver data: the SHA-256 of each
sentence's tokens (``conll.sentence_key``) of every silver record that carries soft targets,
against those of the CoNLL dev and test files. One JSON line; exit status 1 on any overlap.

    python bench/silver_hygiene.py --silver work/silver --conll ../shared/data/conll2003
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etagger import conll, data, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--silver", required=True, help="a `preprocess --soft-targets` output")
    parser.add_argument("--conll", required=True, help="folder with dev.txt and test.txt")
    args = parser.parse_args()
    held_out = {
        split: {conll.sentence_key(s.words) for s in conll.read_conll(f"{args.conll}/{split}.txt")}
        for split in ("dev", "test")
    }
    report: dict = {"held_out_sentences": {k: len(v) for k, v in held_out.items()}}
    overlap = 0
    info = data.load_preprocess_info(args.silver)
    for split in info["soft_target_splits"]:
        if not list(Path(args.silver).glob(f"{split}-*.tfrecord")):
            continue
        silver, sentences, without = set(), 0, 0
        for record in records.read_records(args.silver, split, {"word", "soft_tags"}):
            if "soft_tags" in record:
                silver.add(conll.sentence_key(record["word"]))
                sentences += 1
            else:
                without += 1
        found = {f"in_{k}": len(silver & v) for k, v in held_out.items()}
        overlap += sum(found.values())
        report[split] = {
            "with_soft_targets": sentences,
            "distinct": len(silver),
            "without_soft_targets": without,
            **found,
        }
    print(json.dumps(report))
    sys.exit(1 if overlap else 0)


if __name__ == "__main__":
    main()
