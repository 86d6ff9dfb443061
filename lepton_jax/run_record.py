"""The files that say what a run is, so that predict, export, eval and report can rebuild its
Task without reading its data:

    WORKDIR/config.json   the resolved config (after --config.* overrides), as the run used it
    WORKDIR/run.json      the facts the Task was built from: the dataset's description
                          (DatasetInfo), the op specs with dataset statistics resolved to numbers,
                          steps, parameter count, mesh and process count

Both are written by process 0, after a resume has been accepted (a refused resume leaves every
file as it was), each by writing a new file and renaming it over the old one.
"""

import json
import os
import socket

from etils import epath

from lepton_jax import config_lib, provenance
from lepton_jax.data.info import DatasetInfo
from lepton_jax.data.statistics import OpSpecs
from lepton_jax.errors import UserError, warn

CONFIG_FILE = "config.json"
RUN_FILE = "run.json"


def absolute_path(path: str) -> epath.Path:
  """`path` made absolute if local (Orbax refuses relative paths); gs:// etc. as given."""
  text = str(path)
  return epath.Path(text if "://" in text else os.path.abspath(os.path.expanduser(text)))


def prepare(workdir: str) -> epath.Path:
  """The workdir, created if needed; a UserError if it cannot be written."""
  path = absolute_path(workdir)
  try:
    path.mkdir(parents=True, exist_ok=True)
    # One probe per process: the processes of a multi-host run probe the same workdir at once.
    probe = path / f".write_test.{socket.gethostname()}.{os.getpid()}"
    probe.write_text("ok")
    probe.unlink()
  except OSError as e:
    raise UserError(f"workdir {workdir!r} is not writable ({e.strerror or e}); choose another "
                    "--workdir") from e
  return path


def _replace(path: epath.Path, text: str) -> None:
  partial = path.parent / (path.name + ".partial")
  partial.write_text(text)
  partial.replace(path)


def write(workdir: str, config, record: dict, resuming: bool) -> None:
  """Writes config.json and run.json of `workdir`, with what made the run (provenance: its first
  start and this one); on a resume, warns of each difference from the first start."""
  path = absolute_path(workdir)
  previous = _previous_provenance(path / RUN_FILE)
  current = provenance.collect()
  if resuming and previous:
    for difference in provenance.differences(previous["first"], current):
      warn(f"resuming with a change since this run's first start: {difference}")
  record = dict(record, provenance=provenance.record_start(previous, current))
  _replace(path / CONFIG_FILE, config_lib.to_json(config))
  _replace(path / RUN_FILE, json.dumps(record, indent=2))


def _previous_provenance(path: epath.Path) -> dict | None:
  try:
    stored = json.loads(path.read_text()).get("provenance")
  except (OSError, ValueError, AttributeError):
    return None
  return stored if isinstance(stored, dict) and "first" in stored else None


def read_config(workdir: str):
  """The run's resolved config (its `imports` imported, so its registered names resolve)."""
  return config_lib.from_json_file(str(epath.Path(workdir) / CONFIG_FILE))


def read(workdir: str) -> dict:
  path = epath.Path(workdir) / RUN_FILE
  if not path.exists():
    raise UserError(f"{path} does not exist: is {workdir} a lepton_jax workdir? train into it first")
  try:
    return json.loads(path.read_text())
  except ValueError as e:
    raise UserError(f"{path} is not valid JSON ({e}); rerun the training command to rewrite it") from e


def dataset_info(record: dict) -> DatasetInfo:
  return DatasetInfo.from_dict(record["dataset"])


def op_specs(record: dict, config) -> OpSpecs:
  """The op specs the run trained with (run.json files older than the record: the config's)."""
  if "op_specs" in record:
    return OpSpecs.from_dict(record["op_specs"])
  return OpSpecs.of_config(config.data)
