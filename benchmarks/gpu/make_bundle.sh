#!/usr/bin/env bash
# Build, on a machine with package registries, everything the H200 run needs that the H200 lacks:
# the slimmed vLLM 0.25.0 bundle (../shared/gpu/make_vllm_bundle.sh) and wheels for llmops and the
# libraries its endpoint, chains, fine-tuning and benchmarks use (Python 3.12, manylinux x86-64).
# One device call carries at most 64 MiB, so the wheels are split into parts of at most 44 MB.
#   usage: benchmarks/gpu/make_bundle.sh DIR [SHARED_GPU_DIR]
#   ->  DIR/stash/vllm-slim.tar.xz   DIR/wheels/*.whl (vLLM's deps)   DIR/parts/partN/*.whl
set -euo pipefail
out=${1:?usage: make_bundle.sh DIR [SHARED_GPU_DIR]}
shared=${2:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/gpu}
repo=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out"
test -f "$out/stash/vllm-slim.tar.xz" || bash "$shared/make_vllm_bundle.sh" "$out"
plat=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
      --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux_2_31_x86_64 --platform manylinux1_x86_64)
all="$out/all-wheels"
rm -rf "$all" "$out/parts" && mkdir -p "$all"
# what the H200's python lacks (it has torch, transformers, peft, accelerate, safetensors,
# tokenizers, pandas, pyarrow, pytest); pure-Python wheels resolve for any platform
python3 -m pip download -q --no-deps "${plat[@]}" -d "$all" \
  mlflow-skinny mlflow-tracing "mlflow>=3.5" sqlalchemy alembic mako graphene graphql-core graphql-relay \
  flask werkzeug itsdangerous blinker cloudpickle databricks-sdk opentelemetry-api opentelemetry-sdk \
  opentelemetry-proto opentelemetry-semantic-conventions protobuf sqlparse cachetools gitpython gitdb smmap \
  "langchain-core>=1.0" "langchain-openai>=1.0" langsmith jsonpatch jsonpointer tenacity tiktoken regex \
  aiohttp aiosignal frozenlist multidict yarl propcache aiohappyeyeballs attrs orjson zstandard \
  prometheus-client "deltalake>=1.0" arro3-core click pyyaml pydantic pydantic-core typing-inspection \
  annotated-types requests-toolbelt python-dotenv fastapi docker greenlet \
  trl datasets dill multiprocess xxhash httpx httpcore h11 anyio sniffio pytest-timeout
(cd "$repo" && python3 -m pip wheel -q --no-deps -w "$all" .)
# drop what vLLM's own wheel folder already brings
for w in "$out"/wheels/*.whl; do rm -f "$all/$(basename "$w")"; done
n=1; size=0; mkdir -p "$out/parts/part$n"
for w in $(ls -S "$all"/*.whl); do
  s=$(stat -c %s "$w")
  if (( size + s > 44000000 )); then n=$((n + 1)); size=0; mkdir -p "$out/parts/part$n"; fi
  mv "$w" "$out/parts/part$n/"; size=$((size + s))
done
rm -rf "$all"
du -sh "$out"/stash "$out"/wheels "$out"/parts/*
