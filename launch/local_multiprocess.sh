#!/usr/bin/env bash
# N processes on this machine, each with its own CPU device(s), talking over localhost:
# the multi-host code path without a cluster.
#   launch/local_multiprocess.sh N CONFIG WORKDIR [extra flags...]
set -euo pipefail
N=${1:?number of processes}
CONFIG=${2:?config}
WORKDIR=${3:?workdir}
shift 3
PORT=${PORT:-$((20000 + RANDOM % 20000))}
DEVICES_PER_PROCESS=${DEVICES_PER_PROCESS:-1}
# the caller's XLA_FLAGS pass through, but for the device count, which is set here
INHERITED=$(echo " ${XLA_FLAGS:-}" | sed -E 's/ --xla_force_host_platform_device_count=[0-9]+//g')
pids=()
for ((i = 0; i < N; i++)); do
  XLA_FLAGS="--xla_force_host_platform_device_count=$DEVICES_PER_PROCESS$INHERITED" \
  JAX_PLATFORMS=cpu \
  JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo \
    python -m mde_adv.main --config "$CONFIG" --workdir "$WORKDIR" \
      --config.distributed.enabled=True \
      --config.distributed.coordinator_address="127.0.0.1:$PORT" \
      --config.distributed.num_processes="$N" --config.distributed.process_id="$i" "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
