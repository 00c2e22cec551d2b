#!/usr/bin/env bash
# Trains and evaluates configs one after another: bench/train_queue.sh NAME:CONFIG:SEED ...
# Logs to work/logs/NAME.log, test figures to work/logs/NAME.test.json.
set -u
cd "$(dirname "$0")/.."
for item in "$@"; do
  IFS=: read -r name config seed <<<"$item"
  start=$(date +%s)
  .venv/bin/python cli.py train --data work/conll03 --config "$config" --model-dir "work/models/$name" \
      --seed "$seed" --quiet > "work/logs/$name.log" 2>&1
  .venv/bin/python cli.py evaluate --model "work/models/$name" --data work/conll03 --split test \
      --pred-out "work/logs/$name.pred.txt" > "work/logs/$name.test.json" 2>> "work/logs/$name.log"
  echo "{\"name\": \"$name\", \"wall_seconds\": $(( $(date +%s) - start ))}" >> work/logs/queue.jsonl
done
