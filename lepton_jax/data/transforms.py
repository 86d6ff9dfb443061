"""Device-side preprocessing and augmentation ops, composable from the config.

    config.data.preprocess = ("normalize(mean=0.1307, std=0.3081)",)   # train, eval, predict
    config.data.augment = ("random_crop(padding=4)", "flip_lr")         # train only

An op spec is `name` or `name(key=value, ...)` with Python literal values. An
op factory is registered under kind "op" and returns `fn(x, rng) -> x` acting
on a whole batch of model inputs inside the jitted step: inputs travel to the
device as compact uint8 and are converted there, and augmentation costs no
host time. Each example gets its own random draw, so results depend only on
the step's rng (deterministic given the seed) and not on the batch split.
"""

import ast
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from lepton_jax import registry
from lepton_jax.errors import UserError

Op = Callable[[jax.Array, jax.Array], jax.Array]


def parse_spec(spec: str) -> tuple[str, dict]:
  """'name(a=1, b=(2, 3))' -> ('name', {'a': 1, 'b': (2, 3)})."""
  try:
    node = ast.parse(spec.strip(), mode="eval").body
    if isinstance(node, ast.Name):
      return node.id, {}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.args:
      return node.func.id, {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
  except (SyntaxError, ValueError):
    pass
  raise UserError(f"bad op spec {spec!r}: write name or name(key=value, ...), e.g. 'flip_lr' "
                  "or 'normalize(mean=0.5, std=0.25)'")


def format_spec(name: str, kwargs: dict) -> str:
  """The inverse of parse_spec."""
  if not kwargs:
    return name
  return f"{name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"


def build(specs: Sequence[str]) -> Op:
  """One function applying the ops of `specs` in order."""
  ops = []
  for spec in specs:
    name, kwargs = parse_spec(spec)
    factory = registry.get("op", name)
    try:
      ops.append(factory(**kwargs))
    except TypeError as e:
      raise UserError(f"op {spec!r}: {e}") from e

  def apply(x, rng):
    for op, key in zip(ops, jax.random.split(rng, max(len(ops), 1))):
      x = op(x, key)
    return x

  return apply


def per_example(fn):
  """Lifts fn(example, rng) to a batch with an independent rng per example."""
  def batched(x, rng):
    return jax.vmap(fn)(x, jax.random.split(rng, x.shape[0]))
  return batched


def _as_channels(value):
  return jnp.asarray(value, jnp.float32)


@registry.register("op", "to_float")
def to_float(max_value: float = 255.0):
  """x / max_value as float32 (uint8 images to [0, 1])."""
  return lambda x, rng: x.astype(jnp.float32) / max_value


@registry.register("op", "normalize")
def normalize(mean=0.0, std=1.0, max_value: float = 255.0):
  """(x / max_value - mean) / std; mean and std are scalars or per-channel tuples."""
  if max_value <= 0:
    raise UserError(f"normalize: max_value must be positive, got {max_value}")
  if isinstance(mean, str) or isinstance(std, str):  # 'dataset': see lepton_jax/data/augment.py
    raise UserError(f"normalize(mean={mean!r}, std={std!r}): 'dataset' statistics are filled in "
                    "from the training split when a run loads its dataset; outside a run (or for "
                    "any other word) give numbers")
  mean, std = _as_channels(mean), _as_channels(std)
  if jnp.any(std <= 0):
    raise UserError(f"normalize: std must be positive, got {std.tolist()}")
  return lambda x, rng: (x.astype(jnp.float32) / max_value - mean) / std
