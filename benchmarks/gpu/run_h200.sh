#!/usr/bin/env bash
# The H200 run: installs the bundle, builds a ~1B random-weight Llama, starts the endpoint and
# runs the GPU tests, then the gateway benchmark (16, 64, 128 streams, with and without a
# registered LoRA adapter) and the fine-tuning throughput benchmark. Results go to $OUT.
#
# On a machine with the package registries, build the bundle (vLLM 0.25.0 slimmed, and wheels
# for llmops and what it needs that the H200 lacks), into an ignored folder:
#     benchmarks/gpu/make_bundle.sh .gpu-bundle
# Then one device call per part (each carries at most 64 MiB; the machine stays warm ~30 s
# between calls, so make them back to back):
#   1. carry [.gpu-bundle/stash]          bash benchmarks/gpu/run_h200.sh stash .gpu-bundle/stash
#   2. carry [.gpu-bundle/parts/part1]    bash benchmarks/gpu/run_h200.sh stash .gpu-bundle/parts/part1
#   3. carry [.gpu-bundle/parts/part2]    bash benchmarks/gpu/run_h200.sh stash .gpu-bundle/parts/part2
#   4. carry [.gpu-bundle/parts/part3, .gpu-bundle/wheels]
#                                         bash benchmarks/gpu/run_h200.sh run .gpu-bundle
# Sizes: REQUESTS (per side, concurrency and model; default 512), TOKENS (output tokens, 128),
# FT_STEPS (fine-tuning steps per side, 30). STAGES picks what runs (default: tests gateway finetune).
set -uo pipefail
cmd=${1:?usage: run_h200.sh stash DIR | run BUNDLE}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

if [ "$cmd" = stash ]; then
  src=${2:?stash DIR}
  mkdir -p /root/stash/parts
  if [ -f "$src/vllm-slim.tar.xz" ]; then cp "$src/vllm-slim.tar.xz" /root/stash/
  else cp -r "$src" /root/stash/parts/; fi
  du -sh /root/stash; exit 0
fi

bundle=${2:?run BUNDLE}
out=${OUT:-/tmp/h200-out}
mkdir -p "$out"
cd "$repo"
# shellcheck source=/dev/null
source "$here/install_vllm_on_device.sh" "$bundle/wheels" || exit 3
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \
  /root/stash/parts/*/*.whl "$bundle"/parts/*/*.whl || exit 4
export PYTHONPATH=/tmp/site:$repo PATH=/tmp/site/bin:$PATH HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, vllm, llmops, mlflow; print('torch', torch.__version__, 'vllm', vllm.__version__)" \
  | tee -a "$out/gpu.txt"

model=/tmp/llama-1b
python3 benchmarks/gpu/build_model.py --out "$model" 2>&1 | tail -1 | tee "$out/model.txt"
stages=${STAGES:-tests gateway finetune}
status=0
if [[ " $stages " == *" tests "* ]]; then
  LLMOPS_GPU_MODEL=$model timeout 600 python3 -m pytest -q -m gpu -p no:cacheprovider \
    tests/gpu tests/finetune/test_gpu.py 2>&1 | tail -30 | tee "$out/gpu-tests.txt"
  status=$((status | ${PIPESTATUS[0]}))
fi
if [[ " $stages " == *" gateway "* ]]; then
  timeout 600 python3 benchmarks/gateway_overhead.py --model "$model" --concurrency 16 64 128 \
    --requests "${REQUESTS:-512}" --tokens "${TOKENS:-128}" --client-procs 8 --rounds 1 --adapter \
    --engine-arg=--attention-backend --engine-arg=TRITON_ATTN \
    --engine-arg=--gpu-memory-utilization --engine-arg=0.6 \
    --json-out "$out/gateway.json" 2>&1 | tail -40 | tee "$out/gateway.txt"
  status=$((status | ${PIPESTATUS[0]}))
fi
if [[ " $stages " == *" finetune "* ]]; then
  timeout 600 python3 benchmarks/finetune_throughput.py --steps "${FT_STEPS:-30}" \
    --json-out "$out/finetune.json" 2>&1 | tail -30 | tee "$out/finetune.txt"
  status=$((status | ${PIPESTATUS[0]}))
fi
echo "results in $out (status $status)"
exit $status
