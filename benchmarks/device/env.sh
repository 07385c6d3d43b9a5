# source benchmarks/device/env.sh   (on the GPU machine, in the project root)
# Gathers the carried parts (benchmarks/device/pack.sh) in /root/b, installs a set into /tmp/site
# once all its parts have come, sets the environment and builds the random 0.6B model ($M06).
mkdir -p /root/b
for d in .dv*; do [ -d "$d" ] && cp "$d"/* /root/b/; done
if [ -d .whl ] && [ ! -d /tmp/site0 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site0 .whl/*.whl
fi
for set in A B; do
  want=$(cat /root/b/count$set 2>/dev/null || echo 0)
  have=$(ls /root/b/part$set* 2>/dev/null | wc -l)
  echo "set $set: $have of $want parts"
  if [ "$want" -gt 0 ] && [ "$have" = "$want" ]; then
    (cd /root/b && cat $(ls part$set* | sort -V) | tar x && rm -f part$set* count$set \
      && python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site ./*.whl \
      && rm -f ./*.whl && echo "set $set installed")
  fi
done
export PYTHONPATH=/tmp/site:/tmp/site0:$PWD/core:$PWD/integrations HF_HUB_OFFLINE=1 \
  PYTHONUNBUFFERED=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 TOKENIZERS_PARALLELISM=true
M06=/tmp/qwen3-rerank-bench/qwen3-reranker-0.6b-random  # benchmarks/bench.py's folder for it
if [ ! -f $M06/config.json ]; then
  python3 -c "import torch; torch.set_default_device('cuda'); from qwen3_rerank.random_model import build_random_model as b; b('$M06', '0.6b', dtype='bfloat16')" 2>&1 | tail -1
fi
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
