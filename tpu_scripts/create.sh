#!/usr/bin/env bash
# Creates a Cloud TPU VM or multi-host pod slice.
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<EOF
Usage: $(basename "$0") [flags]

Creates the TPU VM / pod slice NAME.  With --capacity=queued a queued
resource (node id NAME) is requested instead and the script waits until it
is ACTIVE, polling every --poll-seconds for at most --timeout-minutes.
--capacity=spot adds --spot (preemptible; pair with babysit.sh).

$(common_usage)
EOF
}

while (($#)); do
  if parse_common "$@"; then
    shift "$OPTSHIFT"
    continue
  fi
  die "unknown flag: $1"
done
validate_common
location_flags

spot_flags=()
if [[ $TPU_CAPACITY == spot ]]; then spot_flags=(--spot); fi

if [[ $TPU_CAPACITY != queued ]]; then
  # `tpu-vm create` blocks until the node's operation finishes.
  run_cmd gcloud compute tpus tpu-vm create "$TPU_NAME" "${LOCATION_FLAGS[@]}" \
    "--accelerator-type=$TPU_ACCELERATOR" "--version=$TPU_RUNTIME_VERSION" \
    ${spot_flags[@]+"${spot_flags[@]}"}
  exit 0
fi

run_cmd gcloud compute tpus queued-resources create "$TPU_NAME" "--node-id=$TPU_NAME" \
  "${LOCATION_FLAGS[@]}" "--accelerator-type=$TPU_ACCELERATOR" \
  "--runtime-version=$TPU_RUNTIME_VERSION" ${spot_flags[@]+"${spot_flags[@]}"}

# A queued resource may wait hours for capacity; `create` returns at once.
start=$SECONDS
while true; do
  state=$(query_cmd ACTIVE gcloud compute tpus queued-resources describe "$TPU_NAME" \
    "${LOCATION_FLAGS[@]}" '--format=value(state.state)') || state=UNKNOWN
  case "$state" in
    ACTIVE)
      log "queued resource $TPU_NAME is ACTIVE"
      exit 0
      ;;
    FAILED | SUSPENDED | SUSPENDING)
      fail "queued resource $TPU_NAME is $state; delete it (delete.sh --capacity=queued) and retry"
      ;;
  esac
  if timed_out "$start"; then
    fail "queued resource $TPU_NAME not ACTIVE after $TPU_TIMEOUT_MINUTES minutes (state: $state)"
  fi
  log "queued resource $TPU_NAME is ${state:-UNKNOWN}; next poll in ${TPU_POLL_SECONDS}s"
  poll_sleep
done
