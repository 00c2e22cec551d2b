"""Which gold entities two taggers find, split by whether the entity's text is a training
mention: where a teacher's lead over its student lies.

Usage: python bench/entity_breakdown.py --train TRAIN.txt A.pred.txt B.pred.txt
Each prediction file is `evaluate --pred-out` output (word pos chunk gold pred) of the same
test file. Prints JSON: per group ("seen" in training, "unseen"), the gold entities, those
that both, only A, only B or neither found exactly; and each tagger's false positives.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

from etagger import conll, tagschemes

PRED_COLUMNS = ("word", "pos", "chunk", "gold", "pred")
# (found by A, found by B) -> the count it goes to; found by neither: "neither".
WHO = {(True, True): "both", (True, False): "only_a", (False, True): "only_b"}


def training_mentions(path: str) -> set[tuple[str, ...]]:
    return {
        s.columns["word"][start:end]
        for s in conll.read_conll(path)
        for _, start, end in tagschemes.chunks(s.columns["tag"])
    }


def breakdown(train: str, a: str, b: str) -> dict:
    seen = training_mentions(train)
    counts: Counter = Counter()
    for sa, sb in zip(conll.read_conll(a, PRED_COLUMNS), conll.read_conll(b, PRED_COLUMNS)):
        if sa.columns["word"] != sb.columns["word"]:
            raise ValueError(f"{a} and {b} differ at sentence {sa.index}")
        gold = set(tagschemes.chunks(sa.columns["gold"]))
        found_a = set(tagschemes.chunks(sa.columns["pred"]))
        found_b = set(tagschemes.chunks(sb.columns["pred"]))
        for chunk in gold:
            group = "seen" if sa.columns["word"][chunk[1] : chunk[2]] in seen else "unseen"
            counts[group, WHO.get((chunk in found_a, chunk in found_b), "neither")] += 1
            counts[group, "gold"] += 1
        counts["false_positives", "a"] += len(found_a - gold)
        counts["false_positives", "b"] += len(found_b - gold)
    out: dict = {}
    for (group, key), n in sorted(counts.items()):
        out.setdefault(group, {})[key] = n
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True, help="the training CoNLL file")
    parser.add_argument("a", help="predictions of tagger A")
    parser.add_argument("b", help="predictions of tagger B")
    args = parser.parse_args(argv)
    result = breakdown(args.train, args.a, args.b)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
