#!/usr/bin/env bash
# The GPU checks, as one run on a machine with CUDA (issue 15): the GPU tests (pytest -m gpu),
# then bench/gpu.py. Writes its logs and the benchmark's JSON record to $OUT (default
# /tmp/gpu-checks); store the record here with
#   python -c "import json; from hwlib.study.records import save_gpu; save_gpu(json.load(open('gpu.json')))"
set -o pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TQDM_DISABLE=1
OUT="${OUT:-/tmp/gpu-checks}"
mkdir -p "$OUT"
PY="${PY:-python3}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/smi.txt"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
    | tee -a "$OUT/smi.txt"
(cd tests && timeout "${TEST_TIMEOUT:-200}" "$PY" -m pytest -q -m gpu test_gpu.py \
    -p no:cacheprovider 2>&1) | tee "$OUT/tests.log"
timeout "${BENCH_TIMEOUT:-420}" "$PY" bench/gpu.py --out "$OUT/gpu.json" 2>&1 | tee "$OUT/bench.log"
