"""Integrity and fit checks of checkpoints: array checksums, and the comparison of
a checkpoint's leaves (shapes, dtypes, tree) with a model's.

Checksums are computed where each array lives (any sharding, no gather), saved
in a checkpoint's `meta` and verified after restoring, so a silently garbled
data file is caught. The shape comparison reads only a checkpoint's metadata,
so a checkpoint of another model is reported, naming the first parameter that
differs, before anything is restored.
"""

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from lepton_jax.errors import UserError
from lepton_jax.parallel.sharding import path_string


# ------------------------------------------------------------------ checksums

def _leaf_checksum(x):
  """Two uint32 sums of an array's bits: plain, and weighted by position.

  Any flipped bit changes the first; swapped or offsetting changes, the second.
  Computed where the array lives (no reshape, no gather), so it is cheap on any
  sharding and independent of the sharding.
  """
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  x = jnp.asarray(x)
  if x.dtype == jnp.bool_:
    words = x.astype(jnp.uint32)
  else:
    size = x.dtype.itemsize
    words = jax.lax.bitcast_convert_type(x, {1: jnp.uint8, 2: jnp.uint16}.get(size, jnp.uint32))
    words = words.astype(jnp.uint32)
  index = jnp.zeros(words.shape, jnp.uint32)
  stride = 1
  for dim in reversed(range(words.ndim)):
    index = index + jax.lax.broadcasted_iota(jnp.uint32, words.shape, dim) * jnp.uint32(stride)
    stride = (stride * words.shape[dim]) % (1 << 32)
  weights = index * jnp.uint32(2654435761) + jnp.uint32(1)
  return jnp.stack([jnp.sum(words, dtype=jnp.uint32), jnp.sum(words * weights, dtype=jnp.uint32)])


# All leaves' checksums as one (leaves, 2) array: one small transfer per save.
_checksums_jit = jax.jit(lambda tree: jnp.stack(
    [_leaf_checksum(x) for x in jax.tree.leaves(tree)] or [jnp.zeros(2, jnp.uint32)]))


def _all_finite(tree):
  flags = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
           if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(flags)) if flags else jnp.bool_(True)


# Whether every float of a state is finite: one boolean per save, fetched by the writer.
all_finite = jax.jit(_all_finite)


def compile_checksums(abstract_state):
  """The checksum function compiled ahead for states like `abstract_state` (saves then
  spend no time compiling, e.g. when a preemption notice leaves seconds to save)."""
  return _checksums_jit.lower(abstract_state).compile()


def state_checksums(state, compiled=None) -> dict[str, list[int]]:
  """{path: [sum, weighted sum]} of every array of `state` (uint32 arithmetic)."""
  return checksums_by_path(state, checksum_array(state, compiled))


def checksum_array(state, compiled=None) -> jax.Array:
  """The (leaves, 2) checksums of `state`, on its devices (dispatched, not awaited)."""
  if compiled is not None:
    try:
      return compiled(state)
    except (TypeError, ValueError):  # another structure or sharding than compiled for
      pass
  return _checksums_jit(state)


def checksums_by_path(state, sums: jax.Array) -> dict[str, list[int]]:
  """checksum_array's result as {path: [sum, weighted sum]} (waits for it)."""
  # A replicated result: this process's copy is the value (also on multi-host runs).
  sums = np.asarray(sums.addressable_data(0))
  paths = [path_string(p) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]]
  return {path: [int(a), int(b)] for path, (a, b) in zip(paths, sums)}


def verify_checksums(state, meta: dict, compiled=None) -> None:
  """Raises ValueError naming the first array whose checksum differs from `meta`'s."""
  saved = meta.get("checksums")
  if not saved:  # written before checksums existed
    return
  for path, value in state_checksums(state, compiled).items():
    if path in saved and list(saved[path]) != value:
      raise ValueError(f"{path} does not match its checksum (a corrupted data file)")


# ------------------------------------------------------------ tree comparison

def leaf_info(leaf):
  shape = getattr(leaf, "shape", None)
  dtype = getattr(leaf, "dtype", None)
  return (tuple(shape) if shape is not None else None,
          np.dtype(dtype).name if dtype is not None else None)


def flat_shapes(tree) -> dict[str, tuple]:
  """{path: (shape, dtype)} of a pytree's leaves; paths like 'params/dense_0/kernel'."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {path_string(path): leaf_info(leaf) for path, leaf in leaves}


def metadata_shapes(item_dir: epath.Path) -> dict[str, tuple]:
  """{path: (shape, dtype)} of a saved state item, read from its metadata only."""
  if not item_dir.exists():
    raise FileNotFoundError(f"{item_dir} does not exist")
  handler = ocp.PyTreeCheckpointHandler()
  try:
    metadata = handler.metadata(item_dir)
  finally:
    handler.close()
  tree = getattr(metadata, "tree", metadata)
  return flat_shapes(tree)


def describe_leaf(info) -> str:
  shape, dtype = info
  return f"{dtype}{list(shape) if shape is not None else ''}"


def first_mismatch(saved: dict[str, tuple], abstract_state, check_dtype: bool = True) -> str | None:
  """The first difference between a checkpoint's leaves and the model's, in words."""
  wanted = flat_shapes(abstract_state)
  for path, info in wanted.items():
    if path not in saved:
      return f"it has no {path} (this model's {describe_leaf(info)})"
    have = saved[path]
    if have[0] != info[0] or (check_dtype and have[1] != info[1]):
      return f"{path} is {describe_leaf(have)} there but {describe_leaf(info)} in this model"
  for path, info in saved.items():
    if path not in wanted:
      return f"it has {path} ({describe_leaf(info)}), which this model lacks"
  return None


def check_fits(saved: dict[str, tuple], abstract_state, where) -> None:
  mismatch = first_mismatch(saved, abstract_state)
  if mismatch:
    workdir = epath.Path(where).parent.parent
    raise UserError(f"checkpoint {where} does not fit this model: {mismatch}; nothing was changed: "
                    f"rerun the command that trained {workdir} (its config is in "
                    f"{workdir / 'config.json'}), or train this config in a fresh --workdir "
                    f"(--config.init_from={workdir} starts it from the checkpoint's parameters)")
