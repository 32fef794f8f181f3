#!/usr/bin/env bash
# The benchmark from a clean checkout: set up, then 'imu-anon bench' on every exported model in
# models/ (NAME.int8.onnx is measured with NAME.onnx), one JSON per model in bench/results/,
# then the table in bench/README.md is regenerated from those files.
#
#   bash bench/run.sh            # full run: about 3-4 minutes per model, on one core
#   QUICK=1 bash bench/run.sh    # about a minute per model, coarser figures
#   MODELS="models/a.onnx" bash bench/run.sh
#   MQTT_IN=0 bash bench/run.sh  # skip the second capacity run, fed through the broker (~3 min a model)
#
# Run it on a quiet machine: the figures are ratios to the core's own peak, but a core shared
# with other work still gives noisy latency percentiles and a low capacity.
# Without models/*.onnx (nothing exported yet) it measures untrained models of each
# architecture (bench/make_dev_models.py): speed does not depend on the weights.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
host=$(hostname -s 2>/dev/null || echo host)

models=${MODELS:-}
if [ -z "$models" ]; then
    models=$(ls models/*.onnx 2>/dev/null | grep -v '\.int8\.onnx$' || true)
fi
if [ -z "$models" ]; then
    dev=$(mktemp -d "${TMPDIR:-/tmp}/imu-anon-dev-models.XXXXXX")
    trap 'rm -rf "$dev"' EXIT
    echo "bench: no models/*.onnx; exporting untrained models of each architecture to $dev" >&2
    "$PY" bench/make_dev_models.py --out "$dev"
    models=$(ls "$dev"/*.onnx | grep -v '\.int8\.onnx$')
fi

args=()
if [ -n "${QUICK:-}" ]; then args+=(--quick); fi
mkdir -p bench/results
for model in $models; do
    name=$(basename "$model" .onnx)
    out="bench/results/${name}-${host}.json"
    echo "bench: $model -> $out" >&2
    "$PY" -m imu_anon bench --model "$model" --json "$out" "${args[@]}" ${BENCH_ARGS:-}
    if [ "${MQTT_IN:-1}" != 0 ]; then
        # The same capacity search with the wearables publishing to the broker and the gateway
        # reading them with its own MQTT source, as a fleet on WiFi reaches it.
        out="bench/results/${name}-mqtt-in-${host}.json"
        echo "bench: $model (fleet over MQTT) -> $out" >&2
        "$PY" -m imu_anon bench --model "$model" --json "$out" --source mqtt --skip int8,torch,footprint \
            "${args[@]}" ${BENCH_ARGS:-}
    fi
done
"$PY" bench/summarise.py --update-readme bench/results/*.json
