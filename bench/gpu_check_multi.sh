#!/usr/bin/env bash
# Jobs on several GPUs (issue 12), for a machine with more than one NVIDIA GPU, no network, under
# 10 minutes: DDP LoRA and FSDP full fine-tuning against one GPU, and a cancel + resume, through
# the service (bench/multi_gpu.py). With one GPU or none it says so and succeeds.
#   bash bench/gpu_check_multi.sh      (gpu_check.sh runs it at its end)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
count=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
if [ "${count:-0}" -lt 2 ]; then
  echo "multi-GPU check skipped: ${count:-0} GPU(s)"
  exit 0
fi
timeout 580 "$PYTHON" bench/multi_gpu.py --model 0.5b --steps 20
