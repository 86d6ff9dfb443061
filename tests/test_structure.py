"""The package's shape stays as designed: no import cycle (function-local imports and package
__init__ files included) and no function over 80 lines (config builders excepted)."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "lepton_jax"
LIMIT = 80
DECLARATIVE = ("base_config", "get_config")  # config builders: one line per key


def modules() -> dict[str, pathlib.Path]:
  out = {}
  for path in PACKAGE.rglob("*.py"):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
      parts = parts[:-1]
    out[".".join(parts)] = path
  return out


def import_graph(files: dict[str, pathlib.Path]) -> dict[str, set[str]]:
  edges = {m: set() for m in files}
  for mod, path in files.items():
    for node in ast.walk(ast.parse(path.read_text())):
      targets = []
      if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
      edges[mod] |= {t for t in targets if t in files and t != mod}
  return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
  """Strongly connected components of more than one module (Tarjan)."""
  index, low, stack, on, found = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on.add(v)
    for w in edges[v]:
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        found.append(sorted(component))

  for v in sorted(edges):
    if v not in index:
      visit(v)
  return found


def test_cycle_finder_finds_a_cycle():
  assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
  assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
  # A package imports its own submodules through its __init__ (a face); that is not a cycle.
  edges = import_graph(modules())
  faces = {m for m, p in modules().items() if p.name == "__init__.py"}
  edges = {m: {t for t in ts if not (m in faces and t.startswith(m + "."))} for m, ts in edges.items()}
  assert cycles(edges) == []


def test_no_long_functions():
  long = []
  for mod, path in modules().items():
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name not in DECLARATIVE:
        lines = node.end_lineno - node.lineno + 1
        if lines > LIMIT:
          long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({lines})")
  assert not long, long


def test_the_train_loop_reads_in_one_screen():
  tree = ast.parse((PACKAGE / "train" / "loop.py").read_text())
  train = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "train")
  assert train.end_lineno - train.lineno + 1 <= 60
