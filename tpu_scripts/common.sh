#!/usr/bin/env bash
# Globals set here are read by the scripts that source this file.
# shellcheck disable=SC2034
#
# Shared helpers for the Cloud TPU VM scripts; sourced, never executed.
# Every script accepts all common settings (even ones it does not use) so
# that babysit.sh can forward one argument list to create/setup/run/delete.
set -euo pipefail

# fd 3 is the script's real stdout: dry-run lines printed from inside a
# command substitution (e.g. `state=$(query_cmd ...)`) must not be captured.
exec 3>&1

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"

TPU_NAME="${TPU_NAME:-lepton-tpu}"
TPU_ZONE="${TPU_ZONE:-us-central2-b}"
TPU_PROJECT="${TPU_PROJECT:-}"
TPU_ACCELERATOR="${TPU_ACCELERATOR:-v4-8}"
TPU_RUNTIME_VERSION="${TPU_RUNTIME_VERSION:-tpu-ubuntu2204-base}"
TPU_CAPACITY="${TPU_CAPACITY:-on-demand}"
TPU_POLL_SECONDS="${TPU_POLL_SECONDS:-30}"
TPU_TIMEOUT_MINUTES="${TPU_TIMEOUT_MINUTES:-120}"
DRY_RUN="${TPU_DRY_RUN:-0}"

# The exit status the framework uses for "preempted, checkpoint saved, rerun".
EXIT_PREEMPTED=75

die() {
  # Usage errors: one line on stderr, exit 2 (like getopt/argparse).
  echo "error: $*" >&2
  exit 2
}

fail() {
  echo "error: $*" >&2
  exit 1
}

log() {
  echo "[$(basename "$0") $(date -u +%H:%M:%S)] $*" >&2
}

# Quote for copy-pasting into a POSIX shell; plain words stay unquoted so
# the dry-run output reads like the commands one would type.
shell_quote() {
  local out="" arg prefix
  for arg in "$@"; do
    prefix=""
    # `--flag='some value'` reads better than `'--flag=some value'`.
    if [[ $arg =~ ^--[A-Za-z0-9._-]+= ]]; then
      prefix="${BASH_REMATCH[0]}"
      arg="${arg#"$prefix"}"
    fi
    if [[ -n $arg && $arg =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      out+="$prefix$arg "
    else
      out+="$prefix'${arg//\'/\'\\\'\'}' "
    fi
  done
  printf '%s' "${out% }"
}

print_cmd() {
  printf '+ %s\n' "$(shell_quote "$@")" >&3
}

# Side-effecting command: printed under --dry-run, traced and run otherwise.
run_cmd() {
  if [[ $DRY_RUN == 1 ]]; then
    print_cmd "$@"
    return 0
  fi
  printf '+ %s\n' "$(shell_quote "$@")" >&2
  "$@"
}

# Read-only query whose stdout the caller captures: `query_cmd ANSWER CMD...`.
# Under --dry-run CMD is printed and ANSWER returned, so that the dry run
# walks the happy path.
query_cmd() {
  local answer=$1
  shift
  if [[ $DRY_RUN == 1 ]]; then
    print_cmd "$@"
    printf '%s\n' "$answer"
    return 0
  fi
  "$@"
}

# Flag values may be given as `--flag=value` or `--flag value`.  Sets
# OPTVAL and OPTSHIFT (how many words the caller must shift).
take_value() {
  if [[ $1 == *=* ]]; then
    OPTVAL="${1#*=}"
    OPTSHIFT=1
  elif (($# >= 2)); then
    OPTVAL="$2"
    OPTSHIFT=2
  else
    die "${1} requires a value"
  fi
}

# Handles one common flag at "$1"; returns 1 if "$1" is not a common flag.
parse_common() {
  OPTSHIFT=1
  case "$1" in
    --name | --name=*) take_value "$@" && TPU_NAME="$OPTVAL" ;;
    --zone | --zone=*) take_value "$@" && TPU_ZONE="$OPTVAL" ;;
    --project | --project=*) take_value "$@" && TPU_PROJECT="$OPTVAL" ;;
    --accelerator-type | --accelerator-type=*) take_value "$@" && TPU_ACCELERATOR="$OPTVAL" ;;
    --version | --version=*) take_value "$@" && TPU_RUNTIME_VERSION="$OPTVAL" ;;
    --capacity | --capacity=*) take_value "$@" && TPU_CAPACITY="$OPTVAL" ;;
    --poll-seconds | --poll-seconds=*) take_value "$@" && TPU_POLL_SECONDS="$OPTVAL" ;;
    --timeout-minutes | --timeout-minutes=*) take_value "$@" && TPU_TIMEOUT_MINUTES="$OPTVAL" ;;
    --dry-run) DRY_RUN=1 ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) return 1 ;;
  esac
}

validate_common() {
  [[ -n $TPU_NAME ]] || die "--name must not be empty"
  [[ -n $TPU_ZONE ]] || die "--zone must not be empty"
  case "$TPU_CAPACITY" in
    on-demand | spot | queued) ;;
    *) die "--capacity must be one of on-demand, spot, queued (got '$TPU_CAPACITY')" ;;
  esac
  [[ $TPU_POLL_SECONDS =~ ^[0-9]+([.][0-9]+)?$ ]] ||
    die "--poll-seconds must be a non-negative number (got '$TPU_POLL_SECONDS')"
  [[ $TPU_TIMEOUT_MINUTES =~ ^[0-9]+$ ]] ||
    die "--timeout-minutes must be a non-negative integer (got '$TPU_TIMEOUT_MINUTES')"
}

common_usage() {
  cat <<EOF
Common settings (flag / environment variable, current value or default):
  --name NAME               TPU_NAME             (${TPU_NAME})
  --zone ZONE               TPU_ZONE             (${TPU_ZONE})
  --project PROJECT         TPU_PROJECT          (${TPU_PROJECT:-unset: the gcloud default project})
  --accelerator-type TYPE   TPU_ACCELERATOR      (${TPU_ACCELERATOR})
  --version VERSION         TPU_RUNTIME_VERSION  (${TPU_RUNTIME_VERSION})
  --capacity KIND           TPU_CAPACITY         (${TPU_CAPACITY}; one of on-demand, spot, queued)
  --poll-seconds N          TPU_POLL_SECONDS     (${TPU_POLL_SECONDS}; sleep between state polls)
  --timeout-minutes N       TPU_TIMEOUT_MINUTES  (${TPU_TIMEOUT_MINUTES}; max wait for a state, 0 = forever)
  --dry-run                 TPU_DRY_RUN=1        print the commands prefixed with '+ ', run nothing
  -h, --help                show this help
EOF
}

# The flags that reproduce the current common settings in a child script.
common_args() {
  COMMON_ARGS=(--name "$TPU_NAME" --zone "$TPU_ZONE" --accelerator-type "$TPU_ACCELERATOR"
    --version "$TPU_RUNTIME_VERSION" --capacity "$TPU_CAPACITY"
    --poll-seconds "$TPU_POLL_SECONDS" --timeout-minutes "$TPU_TIMEOUT_MINUTES")
  if [[ -n $TPU_PROJECT ]]; then COMMON_ARGS+=(--project "$TPU_PROJECT"); fi
  if [[ $DRY_RUN == 1 ]]; then COMMON_ARGS+=(--dry-run); fi
}

# `--zone=Z [--project=P]`, appended to every gcloud tpus command.
location_flags() {
  LOCATION_FLAGS=("--zone=$TPU_ZONE")
  if [[ -n $TPU_PROJECT ]]; then LOCATION_FLAGS+=("--project=$TPU_PROJECT"); fi
}

# Runs COMMAND on the given worker(s) (a number or "all").
tpu_ssh() {
  local worker=$1 command=$2
  location_flags
  run_cmd gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${LOCATION_FLAGS[@]}" \
    "--worker=$worker" "--command=$command"
}

# Prints the node state (READY, PREEMPTED, ...) or GONE if it cannot be
# described (deleted, or never created).
tpu_state() {
  local state
  location_flags
  if state=$(query_cmd READY gcloud compute tpus tpu-vm describe "$TPU_NAME" \
    "${LOCATION_FLAGS[@]}" '--format=value(state)') && [[ -n $state ]]; then
    printf '%s\n' "$state"
  else
    printf 'GONE\n'
  fi
}

poll_sleep() {
  if [[ $DRY_RUN != 1 ]]; then sleep "$TPU_POLL_SECONDS"; fi
}

# True once more than --timeout-minutes have passed since $1 (a $SECONDS value).
timed_out() {
  ((TPU_TIMEOUT_MINUTES > 0 && SECONDS - $1 > TPU_TIMEOUT_MINUTES * 60))
}
