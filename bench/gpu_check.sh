#!/usr/bin/env bash
# For a machine with one NVIDIA GPU, no network, under 8 minutes: a random-weight Llama of ~0.5B
# parameters, bf16 LoRA, through the service (embedded backend) vs the bare Trainer script.
# Prints tokens/s of both, the service/bare time ratio and peak GPU memory.
#   bash bench/gpu_check.sh            (after `make install`, or with the project installed)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
"$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible to torch'"
timeout 450 "$PYTHON" bench/overhead.py --model 0.5b --bf16 --rounds 1 --steps 60

# ---- several GPUs (issue 12): runs only when the machine has more than one ----
bash bench/gpu_check_multi.sh
# ---- end of the several-GPU block ----
