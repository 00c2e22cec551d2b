#!/usr/bin/env bash
# Peak RSS of the whole process tree against input size: one file of wikitext-2 valid + test
# (1x) and the same repeated 10 times (10x), DirectRunner, for tag-corpus (jsonl, conll) and
# preprocess --raw. Prints one JSON line per run (bench/memory.py).
# Usage: bench/memory_growth.sh [REPEATS]   (10 by default; run on a quiet machine)
set -eu
cd "$(dirname "$0")/.."
repeats=${1:-10}
py=.venv/bin/python
model=models/conll03-bilstm1
mkdir -p work/bench
cat ../shared/data/wikitext-2/valid.txt ../shared/data/wikitext-2/test.txt > work/bench/wiki1x.txt
for _ in $(seq "$repeats"); do cat work/bench/wiki1x.txt; done > "work/bench/wiki${repeats}x.txt"
[ -d work/bench/conll03 ] || $py cli.py preprocess --data-dir ../shared/data/conll2003 --out work/bench/conll03 >/dev/null 2>&1
for size in 1x "${repeats}x"; do
  for format in jsonl conll; do
    rm -rf "work/bench/mem-$format-$size"
    $py bench/memory.py --label "tag-corpus $format $size" -- $py cli.py tag-corpus --model $model \
        --input "work/bench/wiki$size.txt" --output "work/bench/mem-$format-$size" --format $format --wikitext
  done
  $py bench/memory.py --label "preprocess --raw $size" -- $py cli.py preprocess --raw "work/bench/wiki$size.txt" \
      --wikitext --lenient --vocab-from work/bench/conll03 --out "work/bench/mem-pre-$size" --overwrite
done
