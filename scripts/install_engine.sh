#!/usr/bin/env bash
# Install the AutoSegNet engine into a virtual environment with the project's pins (constraints.txt).
# The one install recipe: `make install` (Makefile) and the Docker image (Dockerfile) both run this script,
# so the two cannot drift apart.
#
#   scripts/install_engine.sh VENV [EXTRAS]       e.g. `scripts/install_engine.sh .venv test`
#   scripts/install_engine.sh --torch-only VENV   the venv and torch only (the Dockerfile caches that layer)
#
# VENV is relative to the repository root. Environment:
#   PYTHON       interpreter that creates VENV (default python3)
#   TORCH_INDEX  index URL to take torch from, e.g. https://download.pytorch.org/whl/cu126 (default: pip's
#                configured index). Only the torch step uses it; the engine's other packages come from PyPI.
#
# torch's version is read from constraints.txt, its one owner; every pip call uses `-c constraints.txt`.
set -euo pipefail

torch_only=0
if [ "${1:-}" = "--torch-only" ]; then
    torch_only=1
    shift
fi
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 [--torch-only] VENV [EXTRAS]" >&2
    exit 2
fi
venv=$1
extras=${2:-}
python=${PYTHON:-python3}

cd "$(dirname "${BASH_SOURCE[0]}")/.."

torch_pin=$(sed -n 's/^[[:space:]]*\(torch==[^[:space:]#;]*\).*/\1/p' constraints.txt | head -n 1)
if [ -z "$torch_pin" ]; then
    echo "error: constraints.txt pins no torch version (a line like 'torch==2.13.0'). Add one: an unpinned" \
         "torch pulls several GB of CUDA packages." >&2
    exit 2
fi
index_args=()
if [ -n "${TORCH_INDEX:-}" ]; then
    index_args=(--index-url "$TORCH_INDEX")
fi

"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
# torch first and on its own, so that TORCH_INDEX (a CUDA or CPU build) applies to torch alone.
"$venv/bin/python" -m pip install --quiet -c constraints.txt ${index_args[@]+"${index_args[@]}"} "$torch_pin"
if [ "$torch_only" = 1 ]; then
    exit 0
fi
"$venv/bin/python" -m pip install --quiet -c constraints.txt -e ".${extras:+[$extras]}"
