"""`config.init_from`: start a run from another run's parameters.

The parameters (and model state, e.g. batch_stats) whose paths match
`config.init_from_params` are read from a workdir's newest readable checkpoint,
or from one given step dir, into a freshly initialized state; everything else
(the optimizer state, the step) starts afresh.
"""

import json
import re

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from lepton_jax.checkpoint.integrity import describe_leaf, leaf_info, metadata_shapes, verify_checksums
from lepton_jax.checkpoint.manager import META, STATE, describe
from lepton_jax.errors import UserError, warn
from lepton_jax.parallel.sharding import path_string


def _complete_steps(directory: epath.Path) -> list[epath.Path]:
  """Committed step dirs of a checkpoints directory, newest first."""
  steps = []
  for child in directory.iterdir():
    if re.fullmatch(r"0|[1-9]\d*", child.name) and ocp.path.step.is_path_finalized(child):
      steps.append(child)
  return sorted(steps, key=lambda p: -int(p.name))


def init_from_candidates(path_str: str) -> list[epath.Path]:
  """Step dirs that `config.init_from` may load, newest first."""
  path = epath.Path(path_str)
  if not path.exists():
    raise UserError(f"config.init_from={path_str!r} does not exist; give a run's workdir or one "
                    "of its checkpoint step dirs (WORKDIR/checkpoints/STEP)")
  if (path / STATE).exists():
    if not ocp.path.step.is_path_finalized(path):
      raise UserError(f"config.init_from={path_str!r} is an incomplete checkpoint (its save "
                      "never committed); use a complete step dir or the workdir")
    return [path]
  directory = path / "checkpoints" if (path / "checkpoints").exists() else path
  steps = _complete_steps(directory) if directory.is_dir() else []
  if not steps:
    raise UserError(f"config.init_from={path_str!r} holds no complete checkpoint (looked in "
                    f"{directory}); give a run's workdir or a checkpoint step dir")
  return steps


def loadable_paths(abstract_state) -> dict[str, object]:
  """The leaves init_from may load: params and model_state (e.g. batch_stats)."""
  leaves = jax.tree_util.tree_flatten_with_path(abstract_state)[0]
  return {path_string(p): leaf for p, leaf in leaves
          if path_string(p).split("/")[0] in ("params", "model_state")}


def _nest(flat: dict[str, object]) -> dict:
  nested: dict = {}
  for path, value in flat.items():
    node = nested
    *parents, last = path.split("/")
    for part in parents:
      node = node.setdefault(part, {})
    node[last] = value
  return nested


def _read_meta(step_dir: epath.Path) -> dict:
  path = step_dir / META / "metadata"
  return json.loads(path.read_text()) if path.exists() else {}


def load_init_from(path_str: str, regex: str, abstract_state, state):
  """`state` with the parameters of checkpoint `path_str` whose path matches
  `regex` (others kept as initialised); returns (state, report line)."""
  try:
    pattern = re.compile(regex)
  except re.error as e:
    raise UserError(f"config.init_from_params={regex!r} is not a valid regex: {e}") from e
  targets = loadable_paths(abstract_state)
  chosen = {p: leaf for p, leaf in targets.items() if pattern.search(p)}
  if not chosen:
    raise UserError(f"config.init_from_params={regex!r} matches no parameter of this model; "
                    f"paths look like {next(iter(targets), 'params/dense_0/kernel')}")
  errors = []
  for step_dir in init_from_candidates(path_str):
    item = step_dir / STATE
    try:
      saved = metadata_shapes(item)
    except Exception as e:
      errors.append(f"{step_dir}: {describe(e)}")
      warn(f"init_from: checkpoint {step_dir} is unreadable ({describe(e)}); trying the one "
           "before it")
      continue
    for path, leaf in chosen.items():
      if path not in saved:
        raise UserError(f"config.init_from: {step_dir} has no {path} (matched by "
                        f"config.init_from_params={regex!r}); narrow init_from_params to the "
                        "parameters it has")
      if saved[path][0] != tuple(leaf.shape):
        raise UserError(f"config.init_from: {path} is {describe_leaf(saved[path])} in {step_dir} but "
                        f"{describe_leaf(leaf_info(leaf))} in this model; exclude it with "
                        "config.init_from_params (e.g. '^params/(?!head/)')")
    target = _nest(chosen)
    try:
      with ocp.PyTreeCheckpointer() as checkpointer:
        loaded = checkpointer.restore(item, args=ocp.args.PyTreeRestore(
            item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
            partial_restore=True))
      verify_checksums(loaded, _read_meta(step_dir))
    except Exception as e:
      errors.append(f"{step_dir}: {describe(e)}")
      warn(f"init_from: checkpoint {step_dir} is unreadable ({describe(e)}); trying the one "
           "before it")
      continue
    flat_loaded = {path_string(p): v for p, v in jax.tree_util.tree_flatten_with_path(loaded)[0]}

    def replace(path, value):
      return flat_loaded.get(path_string(path), value)

    merged = jax.tree_util.tree_map_with_path(replace, state)
    if merged.ema_params is not None:
      merged = merged.replace(ema_params=merged.params)
    params_total = {p: l for p, l in targets.items() if p.startswith("params/")}
    params_loaded = [p for p in flat_loaded if p.startswith("params/")]
    values = sum(int(np.prod(chosen[p].shape)) for p in params_loaded)
    values_total = sum(int(np.prod(l.shape)) for l in params_total.values())
    others = len(flat_loaded) - len(params_loaded)
    report = (f"init_from {step_dir}: loaded {len(params_loaded)} of {len(params_total)} parameter "
              f"arrays ({values:,} of {values_total:,} values)"
              + (f" and {others} model-state arrays" if others else "")
              + f" matching {regex!r}; the others are freshly initialized; step 0, fresh "
              "optimizer state")
    return merged, report
  raise UserError(f"config.init_from={path_str!r}: no readable checkpoint ({'; '.join(errors)})")

