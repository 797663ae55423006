#!/usr/bin/env bash
# One process driving every GPU of one node (pmap over the local GPUs).
#   launch/gpu_node.sh [CONFIG] [WORKDIR] [extra flags...]
# Needs `pip install -e . "jax[cuda12]"` (or the jax CUDA wheel matching the driver).
set -euo pipefail
CONFIG=${1:-configs/nyu/paper.py}
WORKDIR=${2:-runs/$(basename "$CONFIG" .py)}
shift $(( $# > 2 ? 2 : $# ))
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
nvidia-smi --query-gpu=name,memory.total --format=csv
exec python -m mde_adv.main --config "$CONFIG" --workdir "$WORKDIR" "$@"
