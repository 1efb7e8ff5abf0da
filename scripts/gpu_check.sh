#!/usr/bin/env bash
# Run the engine's CUDA paths once (AMP fp16/bf16 training, DDP with NCCL, prediction with TTA, the forced
# out-of-memory fallback, the training benchmark) and print ONE JSON report; exit 1 if any step failed.
#
#   scripts/gpu_check.sh --out gpu_check.json            # on a GPU machine (< 8 minutes on one GPU)
#   scripts/gpu_check.sh --device cpu --quick --out x.json   # dry run of the same steps on the CPU (< 2 minutes)
#   scripts/gpu_check.sh --list-steps
#
# Uses the repository's .venv if there is one, else python3. Options: scripts/gpu_check.sh --help
set -euo pipefail
scripts="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$scripts")"
python=python3
if [[ -x "$repo/.venv/bin/python" ]]; then
    python="$repo/.venv/bin/python"
fi
cd "$repo"
exec "$python" "$scripts/gpu_check.py" "$@"
