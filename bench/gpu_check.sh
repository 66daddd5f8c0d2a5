#!/usr/bin/env bash
# For a machine with one NVIDIA GPU, no network, under 10 minutes: a random-weight Llama of ~0.5B
# parameters through the service (embedded backend).
#  1. bf16 LoRA, service vs the bare Trainer script: tokens/s of both, the time ratio, peak memory;
#  2. bench/gpu_checks.py, one line per check: QLoRA trains, checkpoints and resumes bit-exact;
#     peak GPU memory within 15% of the estimate for QLoRA, LoRA and full fine-tuning.
# QLoRA needs bitsandbytes: pip install -e '.[gpu]' (a fresh `make install EXTRAS=worker,test,gpu` has it).
# Exits non-zero, with a line saying why, without a GPU or when a check fails.
#   bash bench/gpu_check.sh            (after `make install`, or with the project installed)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: FAIL no CUDA GPU visible to torch (this script needs one NVIDIA GPU)"
    exit 1
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
if ! "$PYTHON" -c "import bitsandbytes" 2>/dev/null; then
    echo "gpu_check: FAIL bitsandbytes is not installed (method qlora): $PYTHON -m pip install -e '.[gpu]'"
    exit 1
fi
timeout 270 "$PYTHON" bench/overhead.py --model 0.5b --bf16 --rounds 1 --steps 60
timeout 300 "$PYTHON" bench/gpu_checks.py --model 0.5b --methods qlora,lora,full

# ---- several GPUs (issue 12): runs only when the machine has more than one ----
bash bench/gpu_check_multi.sh
# ---- end of the several-GPU block ----
