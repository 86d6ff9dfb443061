"""Config files, command-line overrides and the checks every run relies on.

A config file is Python with `get_config(arg=None) -> ml_collections.ConfigDict`
(big_vision style). `configs/x.py:arg` passes `arg` as a string. The returned
config is locked: overriding a key that does not exist is an error naming the
closest valid keys, and a value must fit the type of the default it replaces.
`validate(config)`, run on the final config (after the overrides), refuses
values no run can use (a batch of 0, a negative seed, ...) naming the key.
"""

import ast
import difflib
import importlib
import importlib.util
import json
import math
import os
from typing import Any, Iterable

import ml_collections

from lepton_jax.errors import UserError

# Keys every config has; docs, tests and the train loop rely on them.
REQUIRED_KEYS = (
    "experiment", "seed", "batch_size", "num_train_steps", "num_epochs", "log_every_steps",
    "eval_every_steps", "checkpoint_every_steps", "model.name", "data.name", "data.manual_dir",
    "data.data_dir", "optimizer.name", "optimizer.learning_rate", "mesh.data", "mesh.fsdp",
    "mesh.model",
)


def load(spec: str) -> ml_collections.ConfigDict:
  """Loads `path.py[:arg]` and returns the locked config."""
  path, _, arg = spec.partition(":")
  if not path.endswith(".py"):
    raise UserError(f"--config {spec!r}: expected a Python config file like configs/quickstart.py[:arg]")
  if not os.path.isfile(path):
    raise UserError(f"config file {path!r} does not exist; configs live in configs/, e.g. configs/quickstart.py")
  module_name = "lepton_config_" + os.path.splitext(os.path.basename(path))[0]
  module_spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except SystemExit as e:
    raise exit_error(path, e) from None
  except Exception as e:  # A user's config file may raise anything.
    raise UserError(f"config file {path!r} failed to load: {type(e).__name__}: {e}") from e
  if not hasattr(module, "get_config"):
    raise UserError(f"config file {path!r} has no get_config(arg=None) function")
  try:
    config = module.get_config(arg) if arg else module.get_config()
  except UserError:
    raise
  except SystemExit as e:
    raise exit_error(path, e) from None
  except Exception as e:
    raise UserError(f"{path}: get_config({arg!r}) failed: {type(e).__name__}: {e}") from e
  if not isinstance(config, ml_collections.ConfigDict):
    raise UserError(f"{path}: get_config() must return an ml_collections.ConfigDict")
  check_required(config, path)
  config.lock()
  import_modules(config)
  return config


def exit_error(path: str, exit_: SystemExit) -> UserError:
  """A config file that exits (sys.exit, exit()) while loading: an error, not a silent success."""
  return UserError(f"config file {path!r} called sys.exit({exit_.code!r}) while loading; a config "
                   "file must define get_config() and return a config, not exit")


def flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  keys = []
  for key, value in config.items():
    full = f"{prefix}{key}"
    keys.append(full)
    if isinstance(value, ml_collections.ConfigDict):
      keys.extend(flat_keys(value, full + "."))
  return keys


def _lookup(config, dotted: str):
  node = config
  for part in dotted.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      return False, None
    node = node[part]
  return True, node


def check_required(config, source: str) -> None:
  missing = [k for k in REQUIRED_KEYS if not _lookup(config, k)[0]]
  if missing:
    raise UserError(f"{source}: config lacks required keys {', '.join(missing)}; "
                    "start from lepton_jax.config_defaults.base_config()")


def unknown_key_error(config, key: str) -> UserError:
  close = difflib.get_close_matches(key, flat_keys(config), n=3, cutoff=0.5)
  hint = f"; did you mean {', '.join(close)}?" if close else "; see docs/config_reference.md for every key"
  return UserError(f"unknown config key {key!r}{hint}")


def parse_value(raw: str, current: Any, key: str) -> Any:
  """Parses a command-line string into the type of the value it replaces."""
  def literal():
    try:
      return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      return raw

  bad = lambda want: UserError(f"--config.{key}={raw!r}: expected {want} (default is {current!r})")
  if isinstance(current, bool):
    low = raw.strip().lower()
    if low in ("true", "1", "yes"):
      return True
    if low in ("false", "0", "no"):
      return False
    raise bad("true or false")
  if isinstance(current, int):
    value = literal()
    if isinstance(value, bool) or not isinstance(value, int):
      if isinstance(value, float) and value.is_integer():
        return int(value)
      raise bad("an integer")
    return value
  if isinstance(current, float):
    value = literal()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise bad("a number")
    return float(value)
  if isinstance(current, str):
    return raw
  if isinstance(current, (tuple, list)):
    value = literal()
    if isinstance(value, str):  # a bare comma-separated list: a,b,c
      value = tuple(v.strip() for v in value.split(",") if v.strip())
    if not isinstance(value, (tuple, list)):
      value = (value,)
    return tuple(value)
  if current is None:
    value = literal()
    return None if value in ("None", "none", "null") else value
  raise bad(type(current).__name__)


def apply_overrides(config: ml_collections.ConfigDict, overrides: Iterable[tuple[str, str]]) -> None:
  """Applies `--config.a.b=value` overrides to the locked `config` in place."""
  for key, raw in overrides:
    found, current = _lookup(config, key)
    if not found:
      raise unknown_key_error(config, key)
    if isinstance(current, ml_collections.ConfigDict):
      raise UserError(f"--config.{key}: {key!r} is a section; set one of its keys, e.g. "
                      f"--config.{key}.{next(iter(current.keys()), 'name')}=...")
    value = parse_value(raw, current, key)
    parent_key, _, leaf = key.rpartition(".")
    parent = _lookup(config, parent_key)[1] if parent_key else config
    try:
      with parent.ignore_type():
        parent[leaf] = value
    except Exception as e:
      raise UserError(f"--config.{key}={raw!r}: {e}") from e


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _validate_steps(config) -> None:
  if not _is_int(config.num_train_steps) or not (config.num_train_steps > 0
                                                 or config.num_train_steps == -1):
    raise UserError(f"num_train_steps={config.num_train_steps!r} is not a step count; use N > 0, "
                    "or -1 to train for num_epochs epochs")
  epochs = config.num_epochs
  if config.num_train_steps == -1 and not (
      isinstance(epochs, (int, float)) and not isinstance(epochs, bool)
      and math.isfinite(epochs) and epochs > 0):
    raise UserError(f"num_epochs={epochs!r} must be a positive number when num_train_steps is -1; "
                    "set num_epochs > 0 or num_train_steps > 0")
  if not _is_int(config.log_every_steps) or config.log_every_steps <= 0:
    raise UserError(f"log_every_steps={config.log_every_steps!r} must be a positive integer (train "
                    "metrics and the progress line every N steps)")
  for key in ("eval_every_steps", "checkpoint_every_steps"):
    if not _is_int(config[key]) or config[key] < -1:
      raise UserError(f"{key}={config[key]!r} is not a step count; use N > 0, -1 (once per epoch) "
                      "or 0 (only at the end)")


def validate(config: ml_collections.ConfigDict) -> None:
  """Refuses values no run can use, naming the key; call it on the final config (after the
  command line's overrides)."""
  if not _is_int(config.batch_size) or config.batch_size <= 0:
    raise UserError(f"batch_size={config.batch_size!r} must be a positive integer (the global batch "
                    "over all devices)")
  found, eval_batch = _lookup(config, "eval.batch_size")
  if found and (not _is_int(eval_batch) or eval_batch < 0):
    raise UserError(f"eval.batch_size={eval_batch!r} must be a positive integer, or 0 for batch_size")
  if not _is_int(config.seed) or not 0 <= config.seed < 2**63:
    raise UserError(f"seed={config.seed!r} must be an integer from 0 to 2**63 - 1")
  _validate_steps(config)
  found, warmup = _lookup(config, "optimizer.warmup_steps")
  if found and (not _is_int(warmup) or warmup < 0):
    raise UserError(f"optimizer.warmup_steps={warmup!r} must be an integer >= 0")


def to_json(config: ml_collections.ConfigDict) -> str:
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)


def from_json_file(path: str) -> ml_collections.ConfigDict:
  """The resolved config a run wrote into its workdir (used by predict/export/report)."""
  from etils import epath
  p = epath.Path(path)
  if not p.exists():
    raise UserError(f"{path} does not exist: is this a lepton_jax workdir? train into it first")
  config = ml_collections.ConfigDict(_tuplify(json.loads(p.read_text())))
  config.lock()
  import_modules(config)
  return config


def _tuplify(tree):
  if isinstance(tree, dict):
    return {k: _tuplify(v) for k, v in tree.items()}
  if isinstance(tree, list):
    return tuple(_tuplify(v) for v in tree)
  return tree


def import_modules(config) -> None:
  """Imports the modules `config.imports` names: a user's own models, datasets, experiments...

  Every entry point loads its config through `load` or `from_json_file`, so each of them imports
  these before it looks anything up in the registry, and a workdir's config.json records them.
  """
  for name in config.get("imports", ()) or ():
    try:
      importlib.import_module(name)
    except ModuleNotFoundError as e:
      if e.name and (name == e.name or name.startswith(e.name + ".")):
        raise UserError(f"config.imports names module {name!r}, which Python cannot find; put the "
                        "directory that holds it on PYTHONPATH") from e
      raise UserError(f"importing {name!r} (config.imports) failed: {e}") from e
    except UserError:
      raise
    except Exception as e:  # a user's module may raise anything
      raise UserError(f"importing {name!r} (config.imports) failed: {type(e).__name__}: "
                      f"{str(e).splitlines()[0] if str(e) else ''}") from e
