#!/usr/bin/env bash
# Copies the project to every worker of the slice and installs it into a
# venv with the TPU build of JAX (the package's `tpu` extra).
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<EOF2
Usage: $(basename "$0") [--repo URL [--ref REF]] [flags]

By default ships \`git archive HEAD\` of --source-dir to all workers with
\`gcloud compute tpus tpu-vm scp --worker=all\` (uncommitted changes are NOT
included: commit first).  With --repo, every worker runs \`git clone URL\`
instead.  Then, on all workers, the code replaces ~/lepton_jax (its .venv is
kept, so reruns are quick) and \`pip install -e '.[tpu]'\` runs in
~/lepton_jax/.venv.

  --source-dir DIR          TPU_SOURCE_DIR       (${SOURCE_DIR})
  --repo URL                TPU_REPO             (${REPO:-unset: ship git archive of --source-dir})
  --ref REF                 TPU_REPO_REF         (${REF:-unset: the default branch of the repository})
  --python PYTHON           TPU_PYTHON           (${PYTHON}; remote interpreter for the venv)
  --pip-args ARGS           TPU_PIP_ARGS         (${PIP_ARGS:-unset}; extra words for pip install)

$(common_usage)
EOF2
}

SOURCE_DIR="${TPU_SOURCE_DIR:-$PROJECT_ROOT}"
REPO="${TPU_REPO:-}"
REF="${TPU_REPO_REF:-}"
PYTHON="${TPU_PYTHON:-python3}"
PIP_ARGS="${TPU_PIP_ARGS:-}"
while (($#)); do
  if parse_common "$@"; then
    shift "$OPTSHIFT"
    continue
  fi
  case "$1" in
    --source-dir | --source-dir=*) take_value "$@" && SOURCE_DIR="$OPTVAL" ;;
    --repo | --repo=*) take_value "$@" && REPO="$OPTVAL" ;;
    --ref | --ref=*) take_value "$@" && REF="$OPTVAL" ;;
    --python | --python=*) take_value "$@" && PYTHON="$OPTVAL" ;;
    --pip-args | --pip-args=*) take_value "$@" && PIP_ARGS="$OPTVAL" ;;
    *) die "unknown flag: $1" ;;
  esac
  shift "$OPTSHIFT"
done
validate_common
if [[ -n $REF && -z $REPO ]]; then die "--ref needs --repo"; fi
location_flags

# Unpack/clone next to the old tree and swap, so a failed fetch leaves the
# previous install intact.  The remote script runs under `set -e`, so steps
# are joined with `;` (a failure inside an && list would not stop it).
if [[ -n $REPO ]]; then
  fetch="git clone -q $(shell_quote "$REPO") \"\$new\""
  if [[ -n $REF ]]; then fetch+="; git -C \"\$new\" checkout -q $(shell_quote "$REF")"; fi
else
  fetch="tar -xzf ~/lepton_jax.tar.gz -C \"\$new\"; rm -f ~/lepton_jax.tar.gz"
  tarball="${TMPDIR:-/tmp}/lepton_jax-${TPU_NAME}.tar.gz"
  if [[ $DRY_RUN != 1 ]]; then
    git -C "$SOURCE_DIR" rev-parse --verify -q HEAD >/dev/null ||
      fail "$SOURCE_DIR has no commit to archive (commit first, or use --repo)"
    if [[ -n $(git -C "$SOURCE_DIR" status --porcelain --untracked-files=no) ]]; then
      log "warning: uncommitted changes in $SOURCE_DIR are not copied"
    fi
  fi
  run_cmd git -C "$SOURCE_DIR" archive --format=tar.gz -o "$tarball" HEAD
  run_cmd gcloud compute tpus tpu-vm scp --recurse "$tarball" "$TPU_NAME:lepton_jax.tar.gz" \
    "${LOCATION_FLAGS[@]}" --worker=all
  if [[ $DRY_RUN != 1 ]]; then rm -f "$tarball"; fi
fi

py=$(shell_quote "$PYTHON")
venv_pkg=$(shell_quote "${PYTHON##*/}-venv")
remote="set -euo pipefail; new=\$HOME/lepton_jax.new; rm -rf \"\$new\"; mkdir -p \"\$new\"; \
$fetch; \
if [ -d ~/lepton_jax/.venv ]; then mv ~/lepton_jax/.venv \"\$new/.venv\"; fi; \
rm -rf ~/lepton_jax; mv \"\$new\" ~/lepton_jax; cd ~/lepton_jax; \
if [ ! -x .venv/bin/python ] && ! $py -m venv .venv; then \
sudo apt-get update -q; sudo apt-get install -y -q $venv_pkg; $py -m venv .venv; fi; \
.venv/bin/python -m pip install -q --upgrade pip; \
.venv/bin/python -m pip install ${PIP_ARGS:+$PIP_ARGS }-e \".[tpu]\"; \
.venv/bin/python -c \"import jax, lepton_jax; print(jax.__version__)\""
tpu_ssh all "$remote"
