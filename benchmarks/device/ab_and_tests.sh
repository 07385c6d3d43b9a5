# One call, no vLLM needed: the torch-engine split A/B on all three workloads, then the two
# longest GPU tests (whole-GPU memory, CUDA-graph replay). Results under $OUT.
source benchmarks/device/env.sh
echo "start $(date +%T)"
timeout 200 python3 benchmarks/ab_cores.py --model $M06 --core before=.before/core --core after=core \
  --workloads mixed16x100,long16x4000,rag100x256 --passes 4 --rounds 1 --out $OUT/ab_cores.json > $OUT/ab_cores.log 2>&1
echo "ab rc=$?"; grep -E "ratio" $OUT/ab_cores.log
e=tests/gpu/test_gpu_engine.py
timeout 230 python3 -m pytest -v -rA -p no:cacheprovider "$e::test_whole_gpu_memory_with_defaults_stays_under_2_5_gib" \
  "$e::test_batches_replay_cuda_graphs" > $OUT/gpu_tests_remaining.log 2>&1
echo "tests rc=$?"; grep -E "PASSED|FAILED|ERROR| passed| failed|GPU used" $OUT/gpu_tests_remaining.log | tail
echo "end $(date +%T)"
