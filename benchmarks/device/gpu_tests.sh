# The GPU tests with vLLM importable, in one pytest run; $1 = time limit (s), the rest what to
# run (default tests/gpu; e.g. a file or `-k ...`, for a share where all do not fit one call)
source benchmarks/device/env.sh
python3 -c "import vllm; print('vllm', vllm.__version__)" 2>&1 | tail -1
limit="${1:-560}"
shift || true
[ $# -gt 0 ] || set -- tests/gpu
timeout "$limit" python3 -m pytest -v -rA -p no:cacheprovider --durations=0 "$@" \
  > "$OUT/gpu_tests.log" 2>&1
echo "tests rc=$?"; grep -E "PASSED|FAILED|ERROR| passed| failed" "$OUT/gpu_tests.log" | tail -40
