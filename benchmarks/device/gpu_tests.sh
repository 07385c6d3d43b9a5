# GPU tests with vLLM importable, the ones with no verdict yet first; $1 = time limit (s)
source benchmarks/device/env.sh
python3 -c "import vllm; print('vllm', vllm.__version__)" 2>&1 | tail -1
e=tests/gpu/test_gpu_engine.py
first=(tests/gpu/test_gpu_vllm.py "$e::test_defaults_on_cuda"
  "$e::test_whole_gpu_memory_with_defaults_stays_under_2_5_gib" "$e::test_batches_replay_cuda_graphs")
end=$(( $(date +%s) + ${1:-500} ))
timeout $(( end - $(date +%s) )) python3 -m pytest -v -rA -p no:cacheprovider "${first[@]}" > "$OUT/gpu_tests_vllm.log" 2>&1
echo "first rc=$?"
timeout $(( end - $(date +%s) )) python3 -m pytest -v -rA -p no:cacheprovider $e \
  $(for t in "${first[@]:1}"; do echo --deselect "$t"; done) > "$OUT/gpu_tests_rest.log" 2>&1
echo "rest rc=$?"; grep -hE "PASSED|FAILED|ERROR| passed| failed" "$OUT"/gpu_tests_*.log | tail -40
