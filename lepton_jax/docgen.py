"""Generates docs/config_reference.md from the code, so it cannot drift.

    python -m lepton_jax.docgen            # rewrite docs/config_reference.md
    python -m lepton_jax.docgen --check    # exit 1 if the committed file is stale

Sources:
  * every key of `config_defaults.base_config()`: its default (the live value)
    and its meaning (the comment after the key in config_defaults.py, read with
    `tokenize`; the comment block above a key, if any, is shown too);
  * every config in configs/: the keys it changes from the defaults or adds
    (loaded with `config_lib.load`, exactly as the CLI loads it);
  * every name in the registry, by kind (what `--list` prints).

The output depends only on the repository's files (no paths, times or
machine facts), so regenerating it on any machine gives the same bytes.
"""

import ast
import glob
import inspect
import io
import os
import sys
import tokenize

import ml_collections

from lepton_jax import config_defaults, config_lib, registry
from lepton_jax.cli import CliParser

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUTPUT = os.path.join("docs", "config_reference.md")
REGENERATE = "python -m lepton_jax.docgen"

# One-line descriptions of the sections of base_config().
SECTIONS = {
    "": "Top-level keys: the run as a whole.",
    "model": "The model: `model.name` picks a registered model; every other key of this section "
             "is passed to it as a constructor argument (configs add the ones they need).",
    "perf": "Efficiency figures logged with the training metrics (MFU, memory) and profiler traces.",
    "data": "The dataset and the device-side ops applied to its inputs.",
    "eval": "Evaluation and the choice of the best checkpoint.",
    "loss": "The loss function.",
    "optimizer": "The optimizer and the learning-rate schedule.",
    "mesh": "The device mesh: axis sizes of (data, fsdp, model); their product is the device count.",
    "sharding": "How parameters (and the optimizer state that mirrors them) are laid out on the mesh.",
}


class KeyDoc:
  """What the source says about one key."""

  def __init__(self, key: str, line: int, comment: str, above: str):
    self.key, self.line, self.comment, self.above = key, line, comment, above


def _attribute_path(node, root: str) -> str | None:
  """'c.a.b' -> 'a.b' for attribute chains rooted at the name `root`."""
  parts = []
  while isinstance(node, ast.Attribute):
    parts.append(node.attr)
    node = node.value
  if isinstance(node, ast.Name) and node.id == root and parts:
    return ".".join(reversed(parts))
  return None


def source_comments(source: str, function: str | None = None) -> dict[str, KeyDoc]:
  """{dotted key: KeyDoc} for every `X.a.b = value  # comment` in `source`.

  Only assignments whose target is an attribute chain on the first parameter
  of `function` (or, if None, on any name) are collected; the comment is the
  one on the assignment's last line, the `above` text the block of full-line
  comments directly before it.
  """
  tree = ast.parse(source)
  comments: dict[int, str] = {}
  full_line: dict[int, str] = {}
  for tok in tokenize.generate_tokens(io.StringIO(source).readline):
    if tok.type == tokenize.COMMENT:
      text = tok.string.lstrip("#").strip()
      if tok.line.strip().startswith("#"):
        full_line[tok.start[0]] = text
      else:
        comments[tok.start[0]] = text

  scopes = [tree]
  if function is not None:
    scopes = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function]
  docs: dict[str, KeyDoc] = {}
  for scope in scopes:
    for node in ast.walk(scope):
      if not isinstance(node, ast.Assign):
        continue
      for target in node.targets:
        root = target
        while isinstance(root, ast.Attribute):
          root = root.value
        if not isinstance(root, ast.Name):
          continue
        key = _attribute_path(target, root.id)
        if key is None:
          continue
        above, line = [], node.lineno - 1
        while line in full_line:
          above.insert(0, full_line[line])
          line -= 1
        docs[key] = KeyDoc(key, node.lineno, comments.get(node.end_lineno, ""), " ".join(above))
  return docs


def leaves(config: ml_collections.ConfigDict, prefix: str = "") -> dict:
  """{dotted key: value} for every non-section key, in insertion order."""
  out = {}
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      out.update(leaves(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def _value(value) -> str:
  text = repr(value)
  if isinstance(value, float) and "e" in text:
    text = f"{value:g}"
  return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def _cell(text: str) -> str:
  return text.replace("|", "\\|").replace("\n", " ")


def default_docs() -> tuple[dict, dict[str, KeyDoc]]:
  with open(config_defaults.__file__, encoding="utf-8") as f:
    source = f.read()
  return leaves(config_defaults.base_config()), source_comments(source, "base_config")


def undocumented_keys() -> list[str]:
  """Keys of base_config() without a trailing comment in config_defaults.py."""
  values, docs = default_docs()
  return [k for k in values if k not in docs or not docs[k].comment]


def config_files(root: str = REPO_ROOT) -> list[str]:
  return sorted(os.path.relpath(p, root).replace(os.sep, "/")
                for p in glob.glob(os.path.join(root, "configs", "*.py"))
                if not os.path.basename(p).startswith("_"))


def _module_docstring(path: str) -> str:
  with open(path, encoding="utf-8") as f:
    return ast.get_docstring(ast.parse(f.read())) or ""


def _config_section(rel_path: str, root: str, base: dict, base_docs: dict[str, KeyDoc]) -> list[str]:
  path = os.path.join(root, rel_path)
  lines = [f"### `{rel_path}`", ""]
  doc = _module_docstring(path)
  if doc:
    lines += [" ".join(doc.split("\n\n")[0].split()), ""]
  try:
    config = config_lib.load(path)
  except Exception as e:  # shown, not hidden: the reference must cover every config
    return lines + [f"**Fails to load**: `{type(e).__name__}: {e}`", ""]
  values = leaves(config)
  with open(path, encoding="utf-8") as f:
    own_docs = source_comments(f.read(), "get_config")
  model = values.get("model.name", "")

  def meaning(key: str) -> str:
    own = own_docs[key].comment if key in own_docs else ""
    base_meaning = base_docs[key].comment if key in base_docs else ""
    if not base_meaning and key.startswith("model."):
      base_meaning = f"argument of model `{model}` (see [its docstring](#models))"
    if own and base_meaning:
      return f"{base_meaning}; *here*: {own}"
    return own or base_meaning

  changed = [k for k, v in values.items() if k in base and base[k] != v]
  added = [k for k in values if k not in base]
  lines += ["| key | value | default | meaning |", "|---|---|---|---|"]
  for key in changed:
    lines.append(f"| `{key}` | {_value(values[key])} | {_value(base[key])} | {_cell(meaning(key))} |")
  for key in added:
    lines.append(f"| `{key}` | {_value(values[key])} | *added* | {_cell(meaning(key))} |")
  if not changed and not added:
    lines.append("| (none) | | | the defaults |")
  lines.append("")
  return lines


def _summary(kind: str, name: str) -> str:
  """The first paragraph of the registered object's docstring (one line)."""
  doc = inspect.getdoc(registry.get(kind, name)) or ""
  return " ".join(doc.split("\n\n")[0].split()) or registry._DOCS[kind].get(name, "")


def _registry_section() -> list[str]:
  lines = ["## Registered names", "",
           "The values the `*.name` keys (and `experiment`, `metrics`, op specs) accept, as "
           "`python -m lepton_jax.main --list` prints them.", ""]
  registry.load_all()
  for kind in registry.KINDS:
    names = registry.names(kind)
    lines += [f"### {registry.plural(kind)}", "", "| name | summary |", "|---|---|"]
    for name in names:
      lines.append(f"| `{name}` | {_cell(_summary(kind, name))} |")
    if not names:
      lines.append("| (none) | |")
    lines.append("")
  return lines


def generate(root: str = REPO_ROOT) -> str:
  """The full text of docs/config_reference.md."""
  values, docs = default_docs()
  lines = [
      "# Config reference",
      "",
      f"<!-- GENERATED by `{REGENERATE}` from lepton_jax/config_defaults.py, configs/*.py and "
      "the registry. Do not edit by hand: edit the comment after the key in "
      "config_defaults.py (or the config) and regenerate. -->",
      "",
      "Every config starts from `lepton_jax.config_defaults.base_config()`; a config file changes "
      "what it needs and may add keys (e.g. model arguments). Any key can be overridden on the "
      "command line with `--config.KEY=VALUE` (the value must fit the type of the default); an "
      "unknown key is an error naming the closest valid keys.",
      "",
      "Contents: [defaults](#defaults) · [configs](#configs) · "
      "[registered names](#registered-names)",
      "",
      "## Defaults",
      "",
  ]
  sections: dict[str, list[str]] = {}
  # In the order of config_defaults.py (ConfigDict iterates in sorted order).
  order = sorted(values, key=lambda k: (docs[k].line if k in docs else 10**9, k))
  for key in order:
    sections.setdefault(key.rpartition(".")[0], []).append(key)
  for section, keys in sections.items():
    lines += [f"### {'`' + section + '`' if section else 'top level'}", ""]
    described = [SECTIONS.get(section, "")]
    if section in docs and docs[section].above:  # the comment block above `c.section = ...`
      described.append(docs[section].above)
    if any(described):
      lines += [" ".join(d for d in described if d), ""]
    lines += ["| key | default | meaning |", "|---|---|---|"]
    notes = []
    for key in keys:
      doc = docs.get(key)
      meaning = doc.comment if doc and doc.comment else "**undocumented**"
      lines.append(f"| `{key}` | {_value(values[key])} | {_cell(meaning)} |")
      if doc and doc.above:
        notes.append(f"`{key}`: {doc.above}")
    lines.append("")
    for note in notes:
      lines += [note, ""]

  base = values
  lines += ["## Configs", "",
            "Each config in `configs/`, with the keys it changes from the defaults and the keys "
            "it adds. Run one with "
            "`python -m lepton_jax.main --config configs/NAME.py --workdir DIR`.", ""]
  for rel_path in config_files(root):
    lines += _config_section(rel_path, root, base, docs)
  lines += _registry_section()
  return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> int:
  parser = CliParser(prog="python -m lepton_jax.docgen", description=__doc__.split("\n\n")[0])
  parser.add_argument("--output", default=os.path.join(REPO_ROOT, DEFAULT_OUTPUT),
                      help="where to write (default: docs/config_reference.md of this checkout)")
  parser.add_argument("--check", action="store_true",
                      help="do not write; exit 1 if the file differs from what would be generated")
  args = parser.parse_args(argv)
  text = generate()
  if args.check:
    try:
      with open(args.output, encoding="utf-8") as f:
        current = f.read()
    except FileNotFoundError:
      current = None
    if current != text:
      print(f"{args.output} is stale; regenerate it with: {REGENERATE}", file=sys.stderr)
      return 1
    print(f"{args.output} is up to date")
    return 0
  os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
  with open(args.output, "w", encoding="utf-8") as f:
    f.write(text)
  print(f"wrote {args.output}")
  missing = undocumented_keys()
  if missing:
    print(f"warning: keys without a comment in config_defaults.py: {', '.join(missing)}",
          file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
