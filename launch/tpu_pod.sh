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
WORKDIR=${WORKDIR:?set WORKDIR (gs://bucket/run, or a disk every worker shares, e.g. Filestore)}
REMOTE_DIR=${REMOTE_DIR:-mde_adv}
# DATA_DIR: where TFDS builds the dataset (default <WORKDIR>/data); with a gs:// WORKDIR give a
# disk path, e.g. a shared Filestore or each worker's local disk (each worker then builds it).
DATA_DIR=${DATA_DIR:-}
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
      pip install -e '.[gcs]' 'jax[tpu]'" ;;
  run)
    ssh_all "cd $REMOTE_DIR && . .venv/bin/activate && \
      python -m mde_adv.main --config $CONFIG --workdir $WORKDIR \
        --config.distributed.enabled=True \
        ${DATA_DIR:+--config.data.pipeline.data_dir=$DATA_DIR} ${EXTRA_FLAGS:-}" ;;
  delete)
    gcloud compute tpus tpu-vm delete "$TPU_NAME" --zone "$ZONE" --quiet ;;
  *) echo "unknown action $1" >&2; exit 2 ;;
esac
