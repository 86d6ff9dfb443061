#!/usr/bin/env bash
# Keeps one experiment running to completion on preemptible (spot/queued)
# capacity: waits for READY, runs, and after a preemption recreates the
# slice, reinstalls and reruns.  Training resumes from the checkpoint in the
# (gs://) workdir because every attempt uses the same workdir.
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<EOF2
Usage: $(basename "$0") --config FILE[:ARG] --workdir gs://... [flags] [-- OVERRIDES...]

Loop: wait until the slice is READY (creating it + setup.sh if it does not
exist), run.sh; exit 0 when the run succeeds.  On failure the slice state
decides: PREEMPTED / TERMINATED / gone -> delete.sh --quiet, create.sh,
setup.sh, rerun; READY and exit status $EXIT_PREEMPTED (framework: preempted,
checkpoint saved) -> rerun; READY and any other status -> stop with that
status (a real bug must not loop).  Every rerun and every failed recreate
counts against --max-restarts.  All attempts append to the same run log.

  --max-restarts N          TPU_MAX_RESTARTS     (${MAX_RESTARTS})

run.sh flags: --config, --workdir, --data-dir, --run-id, --log-dir,
  --allow-local-workdir, -- OVERRIDES (see run.sh --help)
setup.sh flags, used when recreating: --source-dir, --repo, --ref, --python,
  --pip-args (see setup.sh --help)

$(common_usage)
EOF2
}

MAX_RESTARTS="${TPU_MAX_RESTARTS:-20}"
RUN_ID="${TPU_RUN_ID:-}"
run_args=()
setup_args=()
overrides=()
while (($#)); do
  if parse_common "$@"; then
    shift "$OPTSHIFT"
    continue
  fi
  case "$1" in
    --max-restarts | --max-restarts=*) take_value "$@" && MAX_RESTARTS="$OPTVAL" ;;
    --run-id | --run-id=*) take_value "$@" && RUN_ID="$OPTVAL" ;;
    --config | --config=* | --workdir | --workdir=* | --data-dir | --data-dir=* | --log-dir | --log-dir=*)
      take_value "$@" && run_args+=("${1%%=*}" "$OPTVAL")
      ;;
    --allow-local-workdir) run_args+=("$1") ;;
    --source-dir | --source-dir=* | --repo | --repo=* | --ref | --ref=* | --python | --python=* | --pip-args | --pip-args=*)
      take_value "$@" && setup_args+=("${1%%=*}" "$OPTVAL")
      ;;
    --)
      shift
      overrides=(-- "$@")
      break
      ;;
    *) die "unknown flag: $1" ;;
  esac
  shift "$OPTSHIFT"
done
validate_common
[[ $MAX_RESTARTS =~ ^[0-9]+$ ]] || die "--max-restarts must be a non-negative integer (got '$MAX_RESTARTS')"
# One run id for all attempts, so the logs of a run stay in one file.
RUN_ID="${RUN_ID:-${TPU_NAME}-$(date -u +%Y%m%d-%H%M%S)}"
run_args+=(--run-id "$RUN_ID" ${overrides[@]+"${overrides[@]}"})
common_args

# Let the children reject bad flags now (exit 2), not after the first hour.
"$SCRIPT_DIR/run.sh" "${COMMON_ARGS[@]}" --dry-run "${run_args[@]}" >/dev/null
"$SCRIPT_DIR/setup.sh" "${COMMON_ARGS[@]}" --dry-run ${setup_args[@]+"${setup_args[@]}"} >/dev/null

restarts=0
rc=0
count_restart() {
  restarts=$((restarts + 1))
  if ((restarts > MAX_RESTARTS)); then
    log "giving up: more than $MAX_RESTARTS restarts"
    exit $((rc == 0 ? 1 : rc))
  fi
  log "restart $restarts of at most $MAX_RESTARTS"
}

recreate() {
  # The delete fails harmlessly when the node is already gone.
  "$SCRIPT_DIR/delete.sh" "${COMMON_ARGS[@]}" --quiet || log "delete failed; continuing"
  "$SCRIPT_DIR/create.sh" "${COMMON_ARGS[@]}" &&
    "$SCRIPT_DIR/setup.sh" "${COMMON_ARGS[@]}" ${setup_args[@]+"${setup_args[@]}"}
}

# known_state: a state just read by the caller, used instead of the first poll.
known_state=""
wait_until_ready() {
  local start=$SECONDS state
  while true; do
    if [[ -n $known_state ]]; then
      state=$known_state
      known_state=""
    else
      state=$(tpu_state)
    fi
    case "$state" in
      READY) return 0 ;;
      PREEMPTED | TERMINATED | GONE)
        log "$TPU_NAME is $state: recreating it"
        if ! recreate; then
          log "recreating $TPU_NAME failed; retrying in ${TPU_POLL_SECONDS}s"
          count_restart
          poll_sleep
        fi
        start=$SECONDS
        continue
        ;;
      STOPPED | STOPPING)
        fail "$TPU_NAME is $state (stopped by hand?): start or delete it, then rerun"
        ;;
    esac
    if timed_out "$start"; then
      fail "$TPU_NAME not READY after $TPU_TIMEOUT_MINUTES minutes (state: $state)"
    fi
    log "$TPU_NAME is $state; next poll in ${TPU_POLL_SECONDS}s"
    poll_sleep
  done
}

while true; do
  wait_until_ready
  rc=0
  "$SCRIPT_DIR/run.sh" "${COMMON_ARGS[@]}" "${run_args[@]}" || rc=$?
  if ((rc == 0)); then
    log "run $RUN_ID finished successfully after $restarts restart(s)"
    exit 0
  fi
  state=$(tpu_state)
  known_state=$state
  if [[ $state == READY ]]; then
    if ((rc != EXIT_PREEMPTED)); then
      log "run $RUN_ID failed with exit status $rc while $TPU_NAME is READY: not a preemption, stopping"
      exit "$rc"
    fi
    log "run $RUN_ID exited $EXIT_PREEMPTED (preempted, checkpoint saved): rerunning"
  else
    log "run $RUN_ID exited $rc and $TPU_NAME is $state: treating as a preemption"
  fi
  count_restart
done
