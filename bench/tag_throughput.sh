#!/usr/bin/env bash
# End-to-end tag-corpus throughput on wikitext-2 (valid + test), DirectRunner, 1 and 2 workers.
# Usage: bench/tag_throughput.sh [MODEL] [FORMAT]; figures in work/bench/wikitext-wN/timing.json.
set -eu
cd "$(dirname "$0")/.."
model=${1:-models/conll03-bilstm1}
format=${2:-conll}
for workers in 1 2; do
  echo "== $workers worker(s), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  .venv/bin/python cli.py tag-corpus --model "$model" --input '../shared/data/wikitext-2/*.txt' --wikitext \
      --lenient --format "$format" --output "work/bench/wikitext-w$workers" --runner DirectRunner \
      --direct_num_workers="$workers" --direct_running_mode=multi_processing 2>/dev/null
done
