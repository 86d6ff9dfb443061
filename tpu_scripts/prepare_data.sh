#!/usr/bin/env bash
# Prepares a dataset once, on worker 0, into a bucket that all hosts read.
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<EOF2
Usage: $(basename "$0") --dataset NAME --data-dir gs://... [--manual-dir DIR] [flags] [-- ARGS...]

Runs \`python -m lepton_jax.prepare_data --dataset NAME --data-dir DIR\` on
worker 0 in ~/lepton_jax (installed by setup.sh).  ARGS after '--' are
passed to the module.

  --dataset NAME            TPU_DATASET          (${DATASET:-required})
  --data-dir gs://...       TPU_DATA_DIR         (${DATA_DIR:-required})
  --manual-dir DIR          TPU_MANUAL_DIR       (${MANUAL_DIR:-unset}; manually downloaded files, on worker 0 or gs://)
  --allow-local-data-dir    TPU_ALLOW_LOCAL_DATA_DIR=1  accept a data dir not on gs://

$(common_usage)
EOF2
}

DATASET="${TPU_DATASET:-}"
DATA_DIR="${TPU_DATA_DIR:-}"
MANUAL_DIR="${TPU_MANUAL_DIR:-}"
ALLOW_LOCAL="${TPU_ALLOW_LOCAL_DATA_DIR:-0}"
extra=()
while (($#)); do
  if parse_common "$@"; then
    shift "$OPTSHIFT"
    continue
  fi
  case "$1" in
    --dataset | --dataset=*) take_value "$@" && DATASET="$OPTVAL" ;;
    --data-dir | --data-dir=*) take_value "$@" && DATA_DIR="$OPTVAL" ;;
    --manual-dir | --manual-dir=*) take_value "$@" && MANUAL_DIR="$OPTVAL" ;;
    --allow-local-data-dir) ALLOW_LOCAL=1 ;;
    --)
      shift
      extra=("$@")
      break
      ;;
    *) die "unknown flag: $1" ;;
  esac
  shift "$OPTSHIFT"
done
validate_common
[[ -n $DATASET ]] || die "--dataset is required"
[[ -n $DATA_DIR ]] || die "--data-dir is required"
# Only worker 0 writes; the other hosts could not see a local directory.
if [[ $DATA_DIR != gs://* && $ALLOW_LOCAL != 1 ]]; then
  die "--data-dir must start with gs:// (got '$DATA_DIR'; use --allow-local-data-dir to override)"
fi

args=(--dataset "$DATASET" --data-dir "$DATA_DIR")
if [[ -n $MANUAL_DIR ]]; then args+=(--manual-dir "$MANUAL_DIR"); fi
args+=(${extra[@]+"${extra[@]}"})
tpu_ssh 0 "cd ~/lepton_jax && .venv/bin/python -m lepton_jax.prepare_data $(shell_quote "${args[@]}")"
