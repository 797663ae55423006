#!/usr/bin/env bash
# Run mde_adv on every worker of a Cloud TPU VM pod slice.
#   launch/tpu_pod.sh create|copy|run|delete   (settings through the environment below)
# JAX finds the coordinator on TPU pods itself: the config only sets distributed.enabled.
set -euo pipefail
TPU_NAME=${TPU_NAME:?set TPU_NAME}
ZONE=${ZONE:?set ZONE}
ACCELERATOR=${ACCELERATOR:-v4-32}
RUNTIME=${RUNTIME:-tpu-ubuntu2204-base}
CONFIG=${CONFIG:-configs/nyu/paper.py}
WORKDIR=${WORKDIR:?set WORKDIR (a disk every worker shares, e.g. Filestore; gs:// is not supported yet)}
REMOTE_DIR=${REMOTE_DIR:-mde_adv}
ssh_all() { gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "$1"; }

case "${1:?usage: $0 create|copy|run|delete}" in
  create)
    gcloud compute tpus tpu-vm create "$TPU_NAME" --zone "$ZONE" \
      --accelerator-type "$ACCELERATOR" --version "$RUNTIME" ;;
  copy)
    git archive --format=tar.gz -o /tmp/mde_adv.tgz HEAD
    gcloud compute tpus tpu-vm scp /tmp/mde_adv.tgz "$TPU_NAME": --zone "$ZONE" --worker=all
    ssh_all "mkdir -p $REMOTE_DIR && tar xzf mde_adv.tgz -C $REMOTE_DIR && \
      cd $REMOTE_DIR && python3 -m venv .venv && . .venv/bin/activate && \
      pip install -e . 'jax[tpu]'" ;;
  run)
    ssh_all "cd $REMOTE_DIR && . .venv/bin/activate && \
      python -m mde_adv.main --config $CONFIG --workdir $WORKDIR \
        --config.distributed.enabled=True ${EXTRA_FLAGS:-}" ;;
  delete)
    gcloud compute tpus tpu-vm delete "$TPU_NAME" --zone "$ZONE" --quiet ;;
  *) echo "unknown action $1" >&2; exit 2 ;;
esac
