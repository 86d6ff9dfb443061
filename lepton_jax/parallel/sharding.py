"""Shardings of the train state from regex rules in the config.

    config.sharding.rules = (
        (".*dense_0/kernel", "fsdp,model"),   # rows over fsdp, output columns over model
        (".*", "fsdp_auto"),                  # everything else: FSDP where it divides
    )

A rule is (regex, spec). The regex is searched in the leaf's path, e.g.
`params/dense_0/kernel` or `opt_state/0/mu/dense_0/kernel`, so one rule covers
a parameter and the optimizer moments that mirror it. The first match wins.
A spec names a mesh axis per dimension (`''`/`None` for none, `a+b` for two
axes), or is `replicated`, or `fsdp_auto` (the largest dimension divisible by
the fsdp axis size is sharded over it). The step counter and rng are always
replicated.
"""

import re

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

from lepton_jax.errors import UserError
from lepton_jax.parallel.mesh import AXES

ALWAYS_REPLICATED = ("step", "rng")


def path_string(path) -> str:
  parts = []
  for key in path:
    if isinstance(key, jax.tree_util.DictKey):
      parts.append(str(key.key))
    elif isinstance(key, jax.tree_util.GetAttrKey):
      parts.append(key.name)
    elif isinstance(key, jax.tree_util.SequenceKey):
      parts.append(str(key.idx))
    else:
      parts.append(str(key))
  return "/".join(parts)


def parse_spec(spec: str, rule_regex: str):
  spec = spec.strip()
  if spec in ("fsdp_auto", "replicated"):
    return spec
  dims = []
  for part in spec.split(","):
    part = part.strip()
    if part in ("", "None", "none", "-"):
      dims.append(None)
      continue
    axes = tuple(a.strip() for a in part.split("+"))
    for axis in axes:
      if axis not in AXES:
        raise UserError(f"sharding rule {rule_regex!r}: {axis!r} is not a mesh axis; axes are "
                        f"{', '.join(AXES)}")
    dims.append(axes[0] if len(axes) == 1 else axes)
  return P(*dims)


def compile_rules(rules):
  compiled = []
  for rule in rules:
    if not isinstance(rule, (tuple, list)) or len(rule) != 2:
      raise UserError(f"sharding rule {rule!r} must be a pair (regex, spec)")
    regex, spec = rule
    try:
      pattern = re.compile(regex)
    except re.error as e:
      raise UserError(f"sharding rule regex {regex!r} is invalid: {e}") from e
    compiled.append((regex, pattern, parse_spec(str(spec), regex)))
  return compiled


def _fsdp_auto(shape, mesh) -> P:
  size = mesh.shape["fsdp"]
  if size == 1:
    return P()
  for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
    if shape[dim] % size == 0 and shape[dim] >= size:
      return P(*[("fsdp" if d == dim else None) for d in range(len(shape))])
  return P()


def _check_fits(spec: P, shape, mesh, path: str, regex: str) -> None:
  if len(spec) > len(shape):
    raise UserError(f"sharding rule {regex!r} gives {len(spec)} dimensions to {path} of shape "
                    f"{tuple(shape)}; give at most {len(shape)}")
  for dim, axes in enumerate(spec):
    if axes is None:
      continue
    axes = axes if isinstance(axes, tuple) else (axes,)
    ways = 1
    for axis in axes:
      ways *= mesh.shape[axis]
    if shape[dim] % ways:
      raise UserError(f"sharding rule {regex!r}: dimension {dim} of {path} (size {shape[dim]}) "
                      f"does not divide over {'+'.join(axes)} ({ways} devices); change the rule")


def state_shardings(abstract_state, mesh, rules, strict: bool = False):
  """NamedShardings for every leaf of `abstract_state` (a pytree of ShapeDtypeStructs)."""
  compiled = compile_rules(rules)

  def leaf_sharding(path, leaf):
    name = path_string(path)
    if name.split("/")[0] in ALWAYS_REPLICATED or not hasattr(leaf, "shape"):
      return NamedSharding(mesh, P())
    for regex, pattern, spec in compiled:
      if pattern.search(name):
        if spec == "replicated":
          spec = P()
        elif spec == "fsdp_auto":
          spec = _fsdp_auto(leaf.shape, mesh)
        _check_fits(spec, leaf.shape, mesh, name, regex)
        return NamedSharding(mesh, spec)
    if strict:
      raise UserError(f"no sharding rule matches {name} (shape {tuple(leaf.shape)}) and "
                      "sharding.strict is on; add a rule for it, e.g. ('.*', 'replicated')")
    return NamedSharding(mesh, P())

  return jax.tree_util.tree_map_with_path(leaf_sharding, abstract_state)
