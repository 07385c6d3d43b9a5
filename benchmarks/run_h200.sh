#!/usr/bin/env bash
# The whole GPU benchmark in one command: every row of benchmarks/bench.py on the 0.6B, 4B and 8B
# configs, the attention bench, and the markdown tables, all under $OUT.
#
#   benchmarks/run_h200.sh [--part all|1|2|3] [--quick]
#
# Needs vLLM installed into /tmp/site (../shared/tools/vllm-wheels/README.md) and
#   export PYTHONPATH=/tmp/site:$PWD/core:$PWD/integrations
# --part all runs everything in one process tree (~25 minutes on an H200). A device command may
# run at most 10 minutes, so run the three parts instead, one call each (~8 minutes each; each
# writes its own JSON, report.py merges them):
#   1: 0.6B, ours / ours_max_memory / vllm_best / vllm_score / vllm_serve (the headline ratios,
#      measured side by side in one run);
#   2: 0.6B, sentence_transformers / card / transformers, then the attention bench;
#   3: 4B and 8B, ours / vllm_best on rag100x256 and long16x4000.
# Each part runs its own fp32 reference row, so every row's scores are checked in its part.
set -euo pipefail
cd "$(dirname "$0")/.."
part=all
quick=()
while [ $# -gt 0 ]; do
  case "$1" in
    --part) part="$2"; shift 2 ;;
    --quick) quick=(--quick); shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
: "${OUT:?set OUT to the folder for the results}"
export TOKENIZERS_PARALLELISM=true VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
python3 -c "import vllm" 2>/dev/null || echo "warning: vllm is not importable: its rows will record the error" >&2
mkdir -p "$OUT"
bench=(python3 benchmarks/bench.py --device cuda --out "$OUT" "${quick[@]}")
ours_vllm_rows=reference_fp32,ours,ours_max_memory,vllm_best,vllm_score,vllm_serve
python_rows=reference_fp32,sentence_transformers,card,transformers
model06=/tmp/qwen3-rerank-bench/qwen3-reranker-0.6b-random

attention() {
  python3 benchmarks/attention_bench.py --out "$OUT" --model "$model06" 2>&1 | tee "$OUT/attention.log"
}

case "$part" in
  all)
    "${bench[@]}" --name gpu.json
    attention
    python3 benchmarks/report.py "$OUT/gpu.json"
    ;;
  1) "${bench[@]}" --sizes 0.6b --rows "$ours_vllm_rows" --name gpu-part1.json ;;
  2)
    "${bench[@]}" --sizes 0.6b --rows "$python_rows" --name gpu-part2.json
    attention
    ;;
  3) "${bench[@]}" --sizes 4b,8b --name gpu-part-4b-8b.json ;;
  *) echo "unknown part $part" >&2; exit 2 ;;
esac
parts=("$OUT"/gpu-part*.json)
if [ "$part" != all ] && [ -e "${parts[0]}" ]; then
  python3 benchmarks/report.py "${parts[@]}"
fi
ls -la "$OUT"
