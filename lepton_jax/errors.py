"""The one exception type that reaches the user as a one-line `error: ...`, and the
one-line `warning: ...`."""

import sys

import jax


class UserError(Exception):
  """A mistake in what the user gave us (config, data, checkpoint, CLI).

  The message must say what is wrong and how to fix it, in one line. The CLI
  prints it as `error: <message>` and exits with status 2, without a traceback.
  """

  exit_code = 2


class TrainingDiverged(UserError):
  """A non-finite loss, gradient or state: the run stops without saving it (exit status 3).
  `step`: the first step whose loss or gradient was not finite, when that is known."""

  exit_code = 3

  def __init__(self, message: str, step: int | None = None):
    super().__init__(message)
    self.step = step


def warn(message: str) -> None:
  """Prints `warning: <message>` to stderr, once per run (on process 0 only)."""
  if jax.process_index() == 0:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def first_line(e: BaseException) -> str:
  """An exception's first line of text, for one-line messages (its type when it has none)."""
  lines = str(e).strip().splitlines()
  return lines[0][:300] if lines else type(e).__name__
