#!/usr/bin/env bash
# Latency of two exported models, alternating A-B-B-A for 3 rounds so that the machine's drift
# cancels: bench/latency_ab.sh MODEL_A MODEL_B [bench/latency.py options, e.g. --signature
# tag_with_confidence] (one JSON line of bench/latency.py per run).
set -eu
cd "$(dirname "$0")/.."
a=$1 b=$2
shift 2
for round in 1 2 3; do
  for m in "$a" "$b" "$b" "$a"; do
    echo "round $round $m $(.venv/bin/python bench/latency.py --model "$m" --threads 1 "$@" 2>/dev/null | tail -1)"
  done
done
