"""tag-corpus on the real files on every runner this machine can run, and whether the
outputs are byte-identical.

    python bench/runners.py [--conll ../shared/data/conll2003/test.txt]
                            [--raw ../shared/data/wikitext-2/valid.txt --raw .../test.txt]

Runners: DirectRunner (in memory), DirectRunner multi_processing with 2 workers,
PortableRunner against Beam's job service and an external worker pool, and the Dask runner
on a 2-worker cluster (`dask scheduler` + 2 x `dask worker`); the services are started
here on 127.0.0.1 and stopped at the end. CoNLL-2003 test is tagged to CoNLL (and scored
with conlleval), wikitext-2 to JSONL; `preprocess` of the CoNLL-2003 folder runs on the
DirectRunner and the Dask runner. Prints one JSON line per run and a summary line.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import services  # noqa: E402  (the same service starters as the tests)

MODEL = str(ROOT / "models" / "conll03-bilstm1")


def digest(folder: Path) -> str:
    """SHA-256 over the outputs' names and bytes (timing.json aside)."""
    h = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name != "timing.json":
            h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def tag(inputs: list[str], out: Path, fmt: str, extra: list[str]) -> dict:
    argv = [
        sys.executable,
        str(ROOT / "cli.py"),
        "tag-corpus",
        "--model",
        MODEL,
        "--output",
        str(out),
        "--format",
        fmt,
        *[a for i in inputs for a in ("--input", i)],
        *extra,
    ]
    if fmt == "jsonl":
        argv.append("--wikitext")
    subprocess.run(argv, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((out / "timing.json").read_text())


def preprocess(data_dir: str, out: Path, extra: list[str]) -> str:
    """SHA-256 over the names and bytes of every file of a preprocess output."""
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "cli.py"),
            "preprocess",
            "--data-dir",
            data_dir,
            "--out",
            str(out),
            *extra,
        ],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    h = hashlib.sha256()
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(out)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conll", default=str(ROOT.parent / "shared/data/conll2003/test.txt"))
    parser.add_argument("--raw", action="append")
    args = parser.parse_args()
    raw = args.raw or [
        str(ROOT.parent / f"shared/data/wikitext-2/{s}.txt") for s in ("valid", "test")
    ]
    work = Path(tempfile.mkdtemp(prefix="etagger-runners-"))
    sys.path.insert(0, str(ROOT))
    from etagger import metrics

    with contextlib.ExitStack() as stack:
        dask = stack.enter_context(services.dask_cluster(workers=2))
        portable = stack.enter_context(services.portable_runner())
        runners = {
            "direct": [],
            "direct-2-processes": [
                "--direct_num_workers=2",
                "--direct_running_mode=multi_processing",
            ],
            "portable": portable.beam_args,
            "dask-2-workers": ["--runner", "DaskRunner", f"--dask_client_address={dask.address}"],
        }
        digests: dict[str, set[str]] = {"conll": set(), "jsonl": set()}
        for name, extra in runners.items():
            for fmt, inputs in (("conll", [args.conll]), ("jsonl", raw)):
                out = work / f"{name}-{fmt}"
                timing = tag(inputs, out, fmt, extra)
                row = {
                    "runner": name,
                    "format": fmt,
                    "sha256": digest(out),
                    "sentences": timing["sentences"],
                    "tokens": timing["tokens"],
                    "ranges": timing["ranges"],
                    "workers": len(timing["workers"]),
                    "wall_seconds": timing["wall_seconds"],
                }
                if fmt == "conll":
                    report = metrics.evaluate(
                        *metrics.read_conlleval_file(out / f"{Path(args.conll).name}.conll")
                    )
                    row["entity_f1"] = round(report.f1, 6)
                digests[fmt].add(row["sha256"])
                print(json.dumps(row), flush=True)
        preprocessed = set()
        for name in ("direct", "dask-2-workers"):
            sha = preprocess(str(Path(args.conll).parent), work / f"pre-{name}", runners[name])
            preprocessed.add(sha)
            print(
                json.dumps(
                    {"runner": name, "preprocess": str(Path(args.conll).parent), "sha256": sha}
                ),
                flush=True,
            )
    print(
        json.dumps(
            {
                "identical_conll": len(digests["conll"]) == 1,
                "identical_jsonl": len(digests["jsonl"]) == 1,
                "identical_preprocess": len(preprocessed) == 1,
            }
        )
    )


if __name__ == "__main__":
    main()
