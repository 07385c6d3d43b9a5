# Bench rows into $OUT, logs tarred.
# $1 = time limit (s), $2 = rows (reference_fp32 first: each JSON checks its rows' scores against
# its own), $3 = the JSON's name (report.py merges several), $4 = model sizes (default 0.6b).
source benchmarks/device/env.sh
python3 -c "import vllm; print('vllm', vllm.__version__)" 2>&1 | tail -1
rm -rf /tmp/b1 && mkdir -p /tmp/b1
timeout "${1:-500}" python3 benchmarks/bench.py --device cuda --out /tmp/b1 --sizes "${4:-0.6b}" \
  --rows "${2:-reference_fp32,ours,ours_max_memory,vllm_best,vllm_score}" --passes 3 \
  --latency-queries 8 --name "${3:-gpu-part1.json}" > /tmp/b1/run.log 2>&1
echo "bench rc=$?"
grep -v -i "loading weights\|warn" /tmp/b1/run.log | tail -12
cp /tmp/b1/*.json "$OUT/" 2>/dev/null && python3 benchmarks/report.py "$OUT"/*.json
tar czf "$OUT/bench_logs.tgz" -C /tmp/b1 logs run.log
