# Every GPU test (tests/gpu) with vLLM importable, in one pytest run; $1 = time limit (s)
source benchmarks/device/env.sh
python3 -c "import vllm; print('vllm', vllm.__version__)" 2>&1 | tail -1
timeout "${1:-560}" python3 -m pytest -v -rA -p no:cacheprovider tests/gpu > "$OUT/gpu_tests.log" 2>&1
echo "tests rc=$?"; grep -E "PASSED|FAILED|ERROR| passed| failed" "$OUT/gpu_tests.log" | tail -40
