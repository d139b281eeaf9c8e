#!/usr/bin/env bash
# Create the virtual environment and install llmrec with its dev extras.
#
# torch: where pip's find-links folder (PIP_FIND_LINKS) holds a CPU build of torch, install that wheel first so
# the dependency `torch>=2.1` is already satisfied and pip does not pull a multi-GB CUDA build. Elsewhere nothing
# is pinned: pip resolves torch as usual (or set TORCH_SPEC, e.g. TORCH_SPEC="torch==2.5.1").
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
# pip without its chatter: quiet, and without the warning it prints for each configured find-links folder that
# does not exist on this machine (real warnings and errors still show).
pip_install() {
    $PIP install -q --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    if [ -n "${TORCH_SPEC:-}" ]; then
        pip_install "$TORCH_SPEC"
    else
        pytag=$("$VENV/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
        local_cpu_wheel=""
        for dir in ${PIP_FIND_LINKS:-}; do
            for whl in "$dir"/torch-*+cpu-"$pytag"-*.whl; do
                [ -e "$whl" ] && local_cpu_wheel="$whl"
            done
        done
        if [ -n "$local_cpu_wheel" ]; then
            echo "setup: installing the local CPU build of torch: $local_cpu_wheel"
            pip_install "$local_cpu_wheel"
        fi
    fi
fi
pip_install -e ".[dev]"
