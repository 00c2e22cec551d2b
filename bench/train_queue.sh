#!/usr/bin/env bash
# Trains and evaluates configs one after another: bench/train_queue.sh NAME:CONFIG:SEED ...
# Logs to work/logs/NAME.log, test figures to work/logs/NAME.test.json.
# DATA (default work/conll03) is the preprocess output; TRAIN_ARGS are more `train` flags,
# e.g. TRAIN_ARGS="--silver work/silver --distill-weight 0.5".
set -u
cd "$(dirname "$0")/.."
DATA=${DATA:-work/conll03}
for item in "$@"; do
  IFS=: read -r name config seed <<<"$item"
  start=$(date +%s)
  # shellcheck disable=SC2086  # TRAIN_ARGS is a list of flags
  .venv/bin/python cli.py train --data "$DATA" --config "$config" --model-dir "work/models/$name" \
      --seed "$seed" --quiet ${TRAIN_ARGS:-} > "work/logs/$name.log" 2>&1
  .venv/bin/python cli.py evaluate --model "work/models/$name" --data "$DATA" --split test \
      --pred-out "work/logs/$name.pred.txt" > "work/logs/$name.test.json" 2>> "work/logs/$name.log"
  echo "{\"name\": \"$name\", \"wall_seconds\": $(( $(date +%s) - start ))}" >> work/logs/queue.jsonl
done
