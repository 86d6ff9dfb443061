#!/usr/bin/env bash
# Deletes the TPU VM (or, with --capacity=queued, its queued resource).
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<EOF2
Usage: $(basename "$0") [--quiet] [flags]

Deletes the TPU VM NAME.  With --capacity=queued deletes the queued resource
NAME with --force, which also deletes its node.  Asks for confirmation
unless --quiet (TPU_QUIET=1) is given; gcloud itself is always run --quiet.

  --quiet                   TPU_QUIET            (${QUIET}; 1 = do not ask)

$(common_usage)
EOF2
}

QUIET="${TPU_QUIET:-0}"
while (($#)); do
  if parse_common "$@"; then
    shift "$OPTSHIFT"
    continue
  fi
  case "$1" in
    --quiet | -q) QUIET=1 ;;
    *) die "unknown flag: $1" ;;
  esac
  shift
done
validate_common
location_flags

if [[ $QUIET != 1 && $DRY_RUN != 1 ]]; then
  read -r -p "Delete TPU '$TPU_NAME' in $TPU_ZONE ($TPU_CAPACITY)? [y/N] " answer || answer=""
  [[ $answer == [yY]* ]] || fail "not deleting $TPU_NAME"
fi

if [[ $TPU_CAPACITY == queued ]]; then
  run_cmd gcloud compute tpus queued-resources delete "$TPU_NAME" "${LOCATION_FLAGS[@]}" \
    --force --quiet
else
  run_cmd gcloud compute tpus tpu-vm delete "$TPU_NAME" "${LOCATION_FLAGS[@]}" --quiet
fi
