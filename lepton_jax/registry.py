"""The experiment registry: every model, dataset, op, loss, metric, optimizer,
schedule and experiment is registered here by name.

    from lepton_jax import registry

    @registry.register("model", "mlp")
    class MLP(nn.Module): ...

    registry.get("model", "mlp")        # -> MLP
    registry.get("model", "mpl")        # UserError: unknown model 'mpl'; did you mean: mlp, ...

This module holds the only global mutable state of the package: the tables.
Registration happens at import time of the modules that define the objects;
`load_all()` imports them so that look-ups and `--list` see everything.
"""

import difflib
import importlib
from typing import Any, Callable

from lepton_jax.errors import UserError

KINDS = (
    "model",
    "dataset",
    "op",
    "loss",
    "metric",
    "optimizer",
    "schedule",
    "experiment",
)

# Modules whose import registers the built-in entries.
_BUILTIN_MODULES = (
    "lepton_jax.models",
    "lepton_jax.data",
    "lepton_jax.kernels",
    "lepton_jax.losses",
    "lepton_jax.metrics",
    "lepton_jax.optimizers",
    "lepton_jax.experiments",
)

_TABLES: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
_DOCS: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}


def _check_kind(kind: str) -> None:
  if kind not in _TABLES:
    raise ValueError(f"unknown registry kind {kind!r}; kinds are {', '.join(KINDS)}")


def register(kind: str, name: str, doc: str | None = None) -> Callable[[Any], Any]:
  """Decorator registering `obj` under `name` in the table of `kind`."""
  _check_kind(kind)

  def decorator(obj):
    existing = _TABLES[kind].get(name)
    if existing is not None and existing is not obj:
      # Re-importing the same module (e.g. importlib.reload) re-registers the
      # same qualified name; anything else is a real clash.
      same = (getattr(existing, "__module__", None), getattr(existing, "__qualname__", None)) == (
          getattr(obj, "__module__", None), getattr(obj, "__qualname__", None))
      if not same:
        raise ValueError(f"{kind} {name!r} is already registered by {existing!r}")
    _TABLES[kind][name] = obj
    summary = doc or (obj.__doc__ or "").strip().splitlines()[0:1]
    _DOCS[kind][name] = summary if isinstance(summary, str) else (summary[0] if summary else "")
    return obj

  return decorator


def closest(name: str, candidates) -> list[str]:
  """Candidates ordered by similarity to `name`, closest first (all of them)."""
  candidates = sorted(candidates)
  ranked = sorted(candidates, key=lambda c: -difflib.SequenceMatcher(None, name, c).ratio())
  return ranked


def get(kind: str, name: str) -> Any:
  """The object registered as `name`, or a UserError listing close names."""
  _check_kind(kind)
  load_all()
  table = _TABLES[kind]
  if name in table:
    return table[name]
  hint_names = closest(str(name), names(kind))
  hint = (f"registered {plural(kind)} (closest first): {', '.join(hint_names)}" if hint_names
          else f"no {plural(kind)} are registered")
  raise UserError(f"unknown {kind} {name!r}; {hint}")


def names(kind: str, *, private: bool = False) -> list[str]:
  """Registered names of `kind`, sorted.

  Names starting with "_" are private (test fixtures, experiments in progress): they work like any
  other name but are left out of `--list`, the generated docs and close-match hints unless
  `private=True`, so what a user sees never depends on what else was imported.
  """
  _check_kind(kind)
  load_all()
  return sorted(n for n in _TABLES[kind] if private or not n.startswith("_"))


def describe() -> str:
  """Everything registered, grouped by kind: what `--list` prints."""
  load_all()
  lines = []
  for kind in KINDS:
    lines.append(f"{plural(kind)}:")
    for name in names(kind):
      doc = _DOCS[kind].get(name, "")
      lines.append(f"  {name:<28} {doc}".rstrip())
  return "\n".join(lines)


_loaded = False


def load_all() -> None:
  """Imports the modules that register the built-in entries (once)."""
  global _loaded
  if _loaded:
    return
  _loaded = True
  for module in _BUILTIN_MODULES:
    importlib.import_module(module)


def plural(kind: str) -> str:
  return kind + ("es" if kind.endswith("s") else "s")
