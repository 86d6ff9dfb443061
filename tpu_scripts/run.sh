#!/usr/bin/env bash
# Launches one experiment on every worker of the slice at once.
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<EOF2
Usage: $(basename "$0") --config FILE[:ARG] --workdir gs://... [flags] [-- OVERRIDES...]

Runs \`python -m lepton_jax.main --config CONFIG --workdir WORKDIR --distributed\`
on all workers (--worker=all) in ~/lepton_jax (installed by setup.sh).
OVERRIDES (e.g. --config.train.steps=1000) are passed through.  Output is
streamed here (workers interleaved), appended to LOG_DIR/RUN_ID.log locally
and to ~/lepton_logs/RUN_ID.worker-log on each worker.  The exit status is
the remote command's (75 = preempted, checkpoint saved: rerun to resume).

  --config FILE[:ARG]       TPU_CONFIG           (${CONFIG:-required})
  --workdir gs://...        TPU_WORKDIR          (${WORKDIR:-required}; every host must see it)
  --data-dir gs://...       TPU_DATA_DIR         (${DATA_DIR:-unset}; adds --config.data.data_dir=...)
  --run-id ID               TPU_RUN_ID           (${RUN_ID:-unset: NAME-UTC timestamp})
  --log-dir DIR             TPU_LOG_DIR          (${LOG_DIR})
  --allow-local-workdir     TPU_ALLOW_LOCAL_WORKDIR=1  accept a workdir not on gs://

$(common_usage)
EOF2
}

CONFIG="${TPU_CONFIG:-}"
WORKDIR="${TPU_WORKDIR:-}"
DATA_DIR="${TPU_DATA_DIR:-}"
RUN_ID="${TPU_RUN_ID:-}"
LOG_DIR="${TPU_LOG_DIR:-./tpu_logs}"
ALLOW_LOCAL="${TPU_ALLOW_LOCAL_WORKDIR:-0}"
overrides=()
while (($#)); do
  if parse_common "$@"; then
    shift "$OPTSHIFT"
    continue
  fi
  case "$1" in
    --config | --config=*) take_value "$@" && CONFIG="$OPTVAL" ;;
    --workdir | --workdir=*) take_value "$@" && WORKDIR="$OPTVAL" ;;
    --data-dir | --data-dir=*) take_value "$@" && DATA_DIR="$OPTVAL" ;;
    --run-id | --run-id=*) take_value "$@" && RUN_ID="$OPTVAL" ;;
    --log-dir | --log-dir=*) take_value "$@" && LOG_DIR="$OPTVAL" ;;
    --allow-local-workdir) ALLOW_LOCAL=1 ;;
    --)
      shift
      overrides=("$@")
      break
      ;;
    *) die "unknown flag: $1" ;;
  esac
  shift "$OPTSHIFT"
done
validate_common
[[ -n $CONFIG ]] || die "--config is required"
[[ -n $WORKDIR ]] || die "--workdir is required"
# A local path would give every host its own checkpoints, so resuming after a
# preemption (new VMs) would start from scratch.
if [[ $WORKDIR != gs://* && $ALLOW_LOCAL != 1 ]]; then
  die "--workdir must start with gs:// (got '$WORKDIR'; use --allow-local-workdir to override)"
fi
RUN_ID="${RUN_ID:-${TPU_NAME}-$(date -u +%Y%m%d-%H%M%S)}"
[[ $RUN_ID =~ ^[A-Za-z0-9._-]+$ ]] || die "--run-id may only contain letters, digits, '.', '_', '-'"

args=(--config "$CONFIG" --workdir "$WORKDIR" --distributed)
if [[ -n $DATA_DIR ]]; then args+=("--config.data.data_dir=$DATA_DIR"); fi
args+=(${overrides[@]+"${overrides[@]}"})
# pipefail so that tee does not mask the trainer's exit status.
remote="set -o pipefail; mkdir -p ~/lepton_logs; cd ~/lepton_jax && \
.venv/bin/python -m lepton_jax.main $(shell_quote "${args[@]}") 2>&1 | \
tee -a ~/lepton_logs/$RUN_ID.worker-log"

if [[ $DRY_RUN == 1 ]]; then
  tpu_ssh all "$remote"
  exit 0
fi

mkdir -p "$LOG_DIR"
log_file="$LOG_DIR/$RUN_ID.log"
log "run $RUN_ID on all workers of $TPU_NAME; local log: $log_file"
set +e
tpu_ssh all "$remote" 2>&1 | tee -a "$log_file"
rc=${PIPESTATUS[0]}
set -e
log "run $RUN_ID finished with exit status $rc"
exit "$rc"
