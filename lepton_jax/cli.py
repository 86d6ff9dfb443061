"""What every `python -m lepton_jax.X` command line shares: the argument parser whose usage
errors are one-line `error: ...`, the `--config.KEY=VALUE` overrides, and the runner that turns
a UserError into that line and an exit status."""

import argparse
import sys

from lepton_jax.errors import UserError


class CliParser(argparse.ArgumentParser):
  """argparse whose usage errors are UserErrors: one line `error: ... (see --help)`, exit 2; its
  description (a command's whole module docstring) is printed as written."""

  def __init__(self, *args, **kwargs):
    kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
    super().__init__(*args, **kwargs)

  def error(self, message):
    raise UserError(f"{message} (see --help)")


def split_overrides(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
  """Separates `--config.a.b=value` / `--config.a.b value` overrides from other args."""
  rest, overrides = [], []
  i = 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith("--config."):
      key, eq, value = arg[len("--config."):].partition("=")
      if not eq:
        if i + 1 >= len(argv):
          raise UserError(f"{arg} needs a value: {arg}=VALUE")
        value, i = argv[i + 1], i + 1
      if not key:
        raise UserError(f"{arg}: write --config.KEY=VALUE")
      overrides.append((key, value))
    else:
      rest.append(arg)
    i += 1
  return rest, overrides


def run_cli(main, argv=None) -> None:
  """Exits with `main(argv)`'s status; a UserError becomes one line `error: ...`.

  Every `python -m lepton_jax.X` entry point goes through here, so bad input
  never shows a traceback.
  """
  argv = sys.argv[1:] if argv is None else argv
  try:
    code = main(argv)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    code = e.exit_code
  except KeyboardInterrupt:
    print("error: interrupted", file=sys.stderr)
    code = 130
  sys.stdout.flush()
  sys.exit(code)
