#!/usr/bin/env bash
# Interactive ssh into a TPU worker, or runs --command on one or all workers.
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<EOF2
Usage: $(basename "$0") [--worker N|all] [--command CMD] [flags] [-- SSH_ARGS...]

Without --command opens an interactive shell on the worker.  Arguments after
'--' go to ssh itself (e.g. -- -L 6006:localhost:6006).

  --worker N|all            TPU_WORKER           (${WORKER})
  --command CMD             TPU_COMMAND          (${COMMAND:-unset: interactive shell})

$(common_usage)
EOF2
}

WORKER="${TPU_WORKER:-0}"
COMMAND="${TPU_COMMAND:-}"
ssh_args=()
while (($#)); do
  if parse_common "$@"; then
    shift "$OPTSHIFT"
    continue
  fi
  case "$1" in
    --worker | --worker=*) take_value "$@" && WORKER="$OPTVAL" ;;
    --command | --command=*) take_value "$@" && COMMAND="$OPTVAL" ;;
    --)
      shift
      ssh_args=("$@")
      break
      ;;
    *) die "unknown flag: $1" ;;
  esac
  shift "$OPTSHIFT"
done
validate_common
[[ $WORKER == all || $WORKER =~ ^[0-9]+$ ]] || die "--worker must be a number or 'all' (got '$WORKER')"
location_flags

cmd=(gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${LOCATION_FLAGS[@]}" "--worker=$WORKER")
if [[ -n $COMMAND ]]; then cmd+=("--command=$COMMAND"); fi
if ((${#ssh_args[@]})); then cmd+=(-- "${ssh_args[@]}"); fi
run_cmd "${cmd[@]}"
