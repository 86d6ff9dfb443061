"""The one exception type that reaches the user as a one-line `error: ...`, and the
one-line `warning: ...`."""

import argparse


class UserError(Exception):
  """A mistake in what the user gave us (config, data, checkpoint, CLI).

  The message must say what is wrong and how to fix it, in one line. The CLI
  prints it as `error: <message>` and exits with status 2, without a traceback.
  """

  exit_code = 2


class CliParser(argparse.ArgumentParser):
  """argparse whose usage errors are UserErrors: one line `error: ... (see --help)`, exit 2."""

  def error(self, message):
    raise UserError(f"{message} (see --help)")


def run_cli(main, argv=None) -> None:
  """Exits with `main(argv)`'s status; a UserError becomes one line `error: ...`.

  Every `python -m lepton_jax.X` entry point goes through here, so bad input
  never shows a traceback.
  """
  import sys
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


def warn(message: str) -> None:
  """Prints `warning: <message>` to stderr, once per run (on process 0 only)."""
  import sys
  import jax
  if jax.process_index() == 0:
    print(f"warning: {message}", file=sys.stderr, flush=True)
