"""The docs stay true: set-up commands, the generated config reference, the
extension examples (run verbatim), error messages, links."""

import ast
import glob
import json
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TRAIN_COMMAND = ("python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/python -m "
                 "lepton_jax.main --config configs/quickstart.py --workdir workdirs/quickstart")
TEST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest -q"


def read(rel_path: str) -> str:
  with open(os.path.join(REPO, rel_path), encoding="utf-8") as f:
    return f.read()


def code_blocks(markdown: str) -> list[tuple[str, str, int]]:
  """(info string, body, line number of the opening fence) of every fenced block."""
  blocks, lines, i = [], markdown.splitlines(), 0
  while i < len(lines):
    m = re.match(r"^(\s*)(```+|~~~+)(.*)$", lines[i])
    if m:
      fence, start, body = m.group(2), i, []
      i += 1
      while i < len(lines) and not lines[i].strip().startswith(fence):
        body.append(lines[i])
        i += 1
      blocks.append((m.group(3).strip(), "\n".join(body) + "\n", start + 1))
    i += 1
  return blocks


# ------------------------------------------------------------------ README and CI


def test_readme_opens_with_the_two_setup_commands():
  readme = read("README.md")
  blocks = code_blocks(readme)
  assert len(blocks) >= 2, "README.md must open with two code blocks"
  assert blocks[0][1].strip() == TRAIN_COMMAND, "README's first code block must be the train command"
  assert blocks[1][1].strip() == TEST_COMMAND, "README's second code block must be the test command"
  # Labelled, and nothing but the title and a one-sentence description before them.
  before_first = readme[:readme.index(TRAIN_COMMAND)]
  assert "Train the quickstart" in before_first
  between = readme[readme.index(TRAIN_COMMAND):readme.index(TEST_COMMAND)]
  assert "Run the tests" in between
  prose = [l for l in before_first.splitlines() if l.strip() and not l.startswith(("#", "```"))]
  assert len(prose) <= 2, f"README: only a one-sentence description may precede the commands: {prose}"


def test_ci_runs_the_readme_test_command_verbatim():
  path = os.path.join(REPO, ".ci", "run")
  assert os.path.isfile(path), ".ci/run is missing: it must run the README's test command"
  lines = [line.strip() for line in read(".ci/run").splitlines()]
  assert TEST_COMMAND in lines, f".ci/run must contain this exact line:\n{TEST_COMMAND}"


def test_readme_lists_every_config():
  readme = read("README.md")
  for path in sorted(glob.glob(os.path.join(REPO, "configs", "*.py"))):
    rel = "configs/" + os.path.basename(path)
    if not os.path.basename(path).startswith("_"):
      assert rel in readme, f"README.md's configs table lacks {rel}"


def github_anchors(markdown: str) -> set[str]:
  """The anchors GitHub gives the headings of a markdown file."""
  anchors = set()
  markdown = re.sub(r"```.*?```", "", markdown, flags=re.S)
  for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, flags=re.M):
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", "")).replace(" ", "-")
    anchors.add(slug)
  return anchors


def test_relative_links_resolve():
  files = ["README.md"] + sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md")))
  broken = []
  for rel in files:
    text = read(rel)
    # Links inside code blocks are examples, not links.
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
      if re.match(r"^[a-z][a-z0-9+.-]*:", target):
        continue
      path, _, anchor = target.partition("#")
      full = os.path.normpath(os.path.join(REPO, os.path.dirname(rel), path)) if path else os.path.join(REPO, rel)
      if not os.path.exists(full):
        broken.append(f"{rel}: {target}")
      elif anchor and full.endswith(".md") and anchor not in github_anchors(open(full, encoding="utf-8").read()):
        broken.append(f"{rel}: {target} (no such heading)")
  assert not broken, "broken relative links:\n" + "\n".join(broken)


def test_docs_exist():
  for name in ("concepts", "config_reference", "extending", "tpu", "gpu", "offline_data",
               "troubleshooting"):
    assert os.path.isfile(os.path.join(REPO, "docs", f"{name}.md")), f"docs/{name}.md is missing"


# ------------------------------------------------------------------ config reference


def test_every_default_key_is_documented():
  from lepton_jax import docgen
  missing = docgen.undocumented_keys()
  assert not missing, ("keys of base_config() without a trailing comment in "
                       f"lepton_jax/config_defaults.py: {', '.join(missing)}; add `# meaning` after "
                       "each, then run: python -m lepton_jax.docgen")


def test_config_reference_is_up_to_date():
  from lepton_jax import docgen
  expected = docgen.generate(REPO)
  path = os.path.join(REPO, "docs", "config_reference.md")
  current = read("docs/config_reference.md") if os.path.exists(path) else ""
  if current != expected:
    import difflib
    diff = "".join(list(difflib.unified_diff(current.splitlines(True), expected.splitlines(True),
                                             "committed", "generated"))[:60])
    pytest.fail("docs/config_reference.md is stale; regenerate it with:\n\n"
                "    python -m lepton_jax.docgen\n\n" + diff)


def test_config_reference_covers_every_key_and_config():
  from lepton_jax import config_defaults, docgen
  text = read("docs/config_reference.md")
  for key in docgen.leaves(config_defaults.base_config()):
    assert f"| `{key}` |" in text, key
  for rel in docgen.config_files(REPO):
    assert f"### `{rel}`" in text, rel


def test_source_comments_parser():
  from lepton_jax import docgen
  docs = docgen.source_comments(
      "def base_config():\n"
      "  c = X()\n"
      "  c.a = 1  # the a\n"
      "  # about b,\n"
      "  # two lines\n"
      "  c.s.b = (1,\n"
      "           2)  # the b\n"
      "  c.n = 3\n", "base_config")
  assert docs["a"].comment == "the a"
  assert docs["s.b"].comment == "the b" and docs["s.b"].above == "about b, two lines"
  assert docs["n"].comment == ""


# ------------------------------------------------------------------ extending.md, verbatim


def marked_blocks(markdown: str) -> list[tuple[str, str, str]]:
  """(target, info, body) of blocks preceded by `<!-- test: TARGET -->`."""
  out = []
  lines = markdown.splitlines()
  for info, body, line in code_blocks(markdown):
    j = line - 2
    while j >= 0 and not lines[j].strip():
      j -= 1
    m = re.match(r"^<!--\s*test:\s*(\S+)\s*-->$", lines[j].strip()) if j >= 0 else None
    if m:
      out.append((m.group(1), info, body))
  return out


def test_extending_examples_train(tmp_path):
  blocks = marked_blocks(read("docs/extending.md"))
  targets = [t for t, _, _ in blocks]
  assert targets.count("my_extensions.py") == 3, targets  # model, dataset, experiment
  assert "run" in targets
  kinds = []
  for target, info, body in blocks:
    if target == "my_extensions.py":
      assert len(body.strip().splitlines()) < 20, f"an extending.md block is 20+ lines:\n{body}"
      kinds += re.findall(r'registry\.register\("(\w+)"', body)
  assert sorted(kinds) == ["dataset", "experiment", "model"], kinds

  # `python` is this venv's; the project directory is on sys.path only as the cwd of `-m`.
  env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
             JAX_PLATFORMS="cpu")
  env.pop("PYTHONPATH", None)
  for target, info, body in blocks:
    if target == "run":
      result = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
      assert result.returncode == 0, f"{body}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    else:
      path = tmp_path / target
      path.parent.mkdir(parents=True, exist_ok=True)
      with open(path, "a", encoding="utf-8") as f:
        f.write(body + "\n")

  workdirs = glob.glob(str(tmp_path / "workdirs" / "*"))
  assert len(workdirs) == 1, workdirs
  with open(os.path.join(workdirs[0], "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  train = [r for r in rows if r["split"] == "train"]
  test = [r for r in rows if r["split"] == "test"]
  assert train and test, rows
  assert test[-1]["accuracy"] >= 0.8, test[-1]
  config = json.load(open(os.path.join(workdirs[0], "config.json")))
  assert (config["experiment"], config["model"]["name"], config["data"]["name"]) == (
      "confidence_penalty", "tiny_mlp", "iris")


# ------------------------------------------------------------------ troubleshooting.md

SOURCE_DIRS = ("lepton_jax",)


def _error_classes(trees) -> set[str]:
  names, changed = {"UserError"}, True
  while changed:
    changed = False
    for tree in trees:
      for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name not in names:
          bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", None) for b in node.bases}
          if bases & names:
            names.add(node.name)
            changed = True
  return names


def _literal_runs(node) -> list[str] | None:
  """The literal text of a message expression, split at its placeholders."""
  if isinstance(node, ast.Constant) and isinstance(node.value, str):
    return [node.value]
  if isinstance(node, ast.JoinedStr):
    runs = [""]
    for value in node.values:
      if isinstance(value, ast.Constant):
        runs[-1] += str(value.value)
      else:
        runs.append("")
    return runs
  if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
    left, right = _literal_runs(node.left), _literal_runs(node.right)
    if left is None or right is None:
      return left or right
    return left[:-1] + [left[-1] + right[0]] + right[1:]
  return None


def message_prefix(runs: list[str], max_words: int = 4) -> str:
  """The first few literal words of a message: from its first literal run of two or
  more words (or, failing that, of one word), at most `max_words` of them."""
  strip = " \t\n:;,.()[]'\"=!?"
  candidates = [" ".join(r.strip(strip).split()) for r in runs]
  for min_words in (2, 1):
    for text in candidates:
      words = text.split()
      if len(words) >= min_words and any(re.search(r"[A-Za-z]{2}", w) for w in words):
        return " ".join(words[:max_words]).strip(strip)
  return ""


def user_error_messages() -> dict[str, list[str]]:
  """{message prefix: ['file:line', ...]} for every UserError raised in the code."""
  files = sorted(p for d in SOURCE_DIRS for p in glob.glob(os.path.join(REPO, d, "**", "*.py"), recursive=True))
  trees = {}
  for path in files:
    with open(path, encoding="utf-8") as f:
      trees[path] = ast.parse(f.read(), path)
  classes = _error_classes(trees.values())
  found: dict[str, list[str]] = {}
  for path, tree in trees.items():
    for node in ast.walk(tree):
      if not (isinstance(node, ast.Call) and node.args):
        continue
      func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
      if func not in classes:
        continue
      runs = _literal_runs(node.args[0])
      prefix = message_prefix(runs) if runs else ""
      if prefix:
        found.setdefault(prefix, []).append(f"{os.path.relpath(path, REPO)}:{node.lineno}")
  return found


def _normalize(text: str) -> str:
  return " ".join(text.replace("`", "").split()).lower()


def test_message_prefix():
  assert message_prefix(["unknown config key ", "", ""]) == "unknown config key"
  assert message_prefix(["", " is truncated: ", " values for shape ", ""]) == "is truncated"
  assert message_prefix(["--config.", "=", ": expected ", " (default is ", ")"]) == "default is"
  assert message_prefix(["", ": get_config(", ") failed: ", ""]) == "get_config"


def test_troubleshooting_covers_every_user_error():
  messages = user_error_messages()
  assert len(messages) > 20, messages  # the extractor works
  doc = _normalize(read("docs/troubleshooting.md"))
  missing = {p: where for p, where in messages.items() if _normalize(p) not in doc}
  assert not missing, (
      "docs/troubleshooting.md does not mention these error messages (first literal words, "
      "where raised); add each with what to do:\n" +
      "\n".join(f"  {p!r}  ({', '.join(w)})" for p, w in sorted(missing.items())))


def test_troubleshooting_lists_exit_codes():
  doc = read("docs/troubleshooting.md")
  main_doc = ast.get_docstring(ast.parse(read("lepton_jax/main.py")))
  for code in re.findall(r"\b(\d+) [a-z]", main_doc.split("Exit status:")[1]):
    assert f"`{code}`" in doc, f"docs/troubleshooting.md does not explain exit status {code}"
