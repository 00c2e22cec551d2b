"""etagger against the spaCy peer, measured side by side: alternating runs on the same
inputs in one session, each figure's ratio taken against the peer run beside it.

    python bench/speed.py [--rounds 3] [--big]      (make speed; needs make peer)

Each round runs, in this order:
  bulk     etagger tag-corpus to JSONL, the peer's nlp.pipe, etagger tag-corpus to CoNLL:
           raw wikitext-2 valid+test, whole processes timed from outside (bench/bulk.py,
           bench/peers/spacy_peer.py bulk); each tool counts its own tokens
  latency  CoNLL-2003 test sentences one at a time on one thread, from gold tokens:
           etagger's serving call (bench/latency.py), the peer's `ner` on a Doc; then
           etagger's `tag --spans` line mode, a line written and its answer read back
With --big the bulk runs also go over one file of wikitext-2 valid+test ten times
(work/bench/wikitext-10x.txt). Prints one JSON line per run, then one summary line with
the median ratio of each figure over the rounds. Run it on a quiet machine.

Each timed bulk run follows an untimed run of the same tool on 20 lines (--cold: none), so
that both tools start with their files in the page cache: this VM's kernel pages out file
pages left untouched for about a minute (DAMON), and a start-up that rereads TensorFlow's or
spaCy's libraries from disk took 10-40 s longer than the same process warm.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bulk import MODEL, WIKITEXT, bulk  # noqa: E402

from etagger.conll import read_conll  # noqa: E402

PEER = [str(ROOT / "bench" / "peers" / ".venv" / "bin" / "python"), "bench/peers/spacy_peer.py"]
CONLL_TEST = ROOT.parent / "shared" / "data" / "conll2003" / "test.txt"
ONE_THREAD = {"OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}


def json_line(command: list[str], env: dict | None = None) -> dict:
    """The last line a command prints, parsed as JSON."""
    done = subprocess.run(
        command,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def peer_bulk(inputs: list[str]) -> dict:
    start = time.perf_counter()
    result = json_line([*PEER, "bulk", "--input", *inputs, "--wikitext"])
    seconds = time.perf_counter() - start
    return {
        "tool": "spacy",
        **result,
        "process_seconds": round(seconds, 3),
        "process_tokens_per_second": round(result["tokens"] / seconds, 1),
    }


def sentences(path: Path) -> list[str]:
    """The CoNLL file's sentences as lines of space-joined words."""
    return [" ".join(s.words) for s in read_conll(path)]


def tag_line_latency(model: str, lines: list[str]) -> dict:
    """`cli.py tag --spans` on one thread: per line, the time from writing it to reading its
    JSON answer (after 50 warm-up lines)."""
    process = subprocess.Popen(
        [sys.executable, "cli.py", "tag", "--model", model, "--spans"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env={**os.environ, **ONE_THREAD},
    )  # fmt: skip
    assert process.stdin and process.stdout
    seconds = []
    for i, line in enumerate(lines[:50] + lines):
        start = time.perf_counter()
        process.stdin.write(line.encode("utf-8") + b"\n")
        process.stdin.flush()
        process.stdout.readline()
        if i >= 50:
            seconds.append(time.perf_counter() - start)
    process.stdin.close()
    process.wait()
    ms = np.array(seconds) * 1000
    return {
        "tool": "etagger",
        "mode": "tag-line",
        "lines": len(seconds),
        "mean_ms": round(float(ms.mean()), 3),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
    }


def big_file() -> str:
    """wikitext-2 valid+test, ten times over, as one file (made once)."""
    path = ROOT / "work" / "bench" / "wikitext-10x.txt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        text = b"".join((WIKITEXT / name).read_bytes() for name in ("valid.txt", "test.txt"))
        path.write_bytes(text * 10)
    return str(path)


def warmup_file() -> str:
    """The first 20 lines of wikitext-2 valid (made once), for the untimed warm-up runs."""
    path = ROOT / "work" / "bench" / "warmup.txt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = (WIKITEXT / "valid.txt").read_text(encoding="utf-8").splitlines(keepends=True)
        path.write_text("".join(lines[:20]), encoding="utf-8")
    return str(path)


def ratio(ours: float, theirs: float) -> float:
    return round(ours / theirs, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(MODEL))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big", action="store_true", help="also bulk over the 10x file")
    parser.add_argument("--cold", action="store_true", help="no warm-up run before bulk runs")
    args = parser.parse_args()
    warm = [] if args.cold else [[warmup_file()]]  # the warm-up run's inputs, if any
    wikitext = [str(WIKITEXT / "valid.txt"), str(WIKITEXT / "test.txt")]
    lines = sentences(CONLL_TEST)
    ratios: dict[str, list[float]] = {}

    def show(result: dict) -> dict:
        print(json.dumps(result), flush=True)
        return result

    def run_bulk(tool: str, inputs: list[str]) -> dict:
        """The peer's bulk run, or etagger's to the format ``tool``, after its warm-up."""
        for files in (*warm, inputs):  # the warm-up is untimed: only the last result counts
            result = peer_bulk(files) if tool == "peer" else bulk(args.model, files, tool)
        return result

    def note(name: str, value: float) -> None:
        ratios.setdefault(name, []).append(value)

    for _ in range(args.rounds):
        corpora = [("wikitext", wikitext)] + ([("10x", [big_file()])] if args.big else [])
        for name, inputs in corpora:
            jsonl, peer, conll = (
                show(run_bulk(tool, inputs)) for tool in ("jsonl", "peer", "conll")
            )
            for fmt, ours in (("jsonl", jsonl), ("conll", conll)):
                note(
                    f"bulk_{name}_{fmt}_tokens_per_second",
                    ratio(ours["process_tokens_per_second"], peer["process_tokens_per_second"]),
                )
                note(
                    f"bulk_{name}_{fmt}_same_text_speed",
                    ratio(peer["process_seconds"], ours["process_seconds"]),
                )
        ours = show(
            {
                "tool": "etagger",
                **json_line(
                    [sys.executable, "bench/latency.py", "--model", args.model], ONE_THREAD
                ),
            }
        )
        peer = show({"tool": "spacy", **json_line([*PEER, "latency", "--conll", str(CONLL_TEST)])})
        line_mode = show(tag_line_latency(args.model, lines))
        for figure in ("mean_ms", "p99_ms"):
            note(f"latency_{figure}", ratio(ours[figure], peer[figure]))
            note(f"tag_line_latency_{figure}", ratio(line_mode[figure], peer[figure]))
    summary = {k: statistics.median(v) for k, v in ratios.items()}
    print(json.dumps({"summary": "median etagger/peer ratio over rounds", "rounds": args.rounds,
                      **summary, "per_round": ratios}))  # fmt: skip


if __name__ == "__main__":
    main()
