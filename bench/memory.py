"""Peak resident memory of a command's whole process tree, and its wall time.

    python bench/memory.py [--label NAME] -- COMMAND [ARGS...]

Samples the RSS of the command and all its descendants (Beam workers, subprocesses) every
50 ms and prints one JSON line: {"label", "peak_rss_mb", "wall_seconds", "returncode"}.
The peak is of the sum over the tree at one instant, so workers that start and stop at
different times are not added up.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import psutil


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--label", default="")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    process = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        try:
            peak = max(peak, tree_rss(process))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    wall = time.perf_counter() - start
    print(
        json.dumps(
            {
                "label": args.label,
                "peak_rss_mb": round(peak / 2**20, 1),
                "wall_seconds": round(wall, 2),
                "returncode": child.returncode,
            }
        )
    )
    sys.exit(child.returncode)


if __name__ == "__main__":
    main()
