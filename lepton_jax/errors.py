"""The one exception type that reaches the user as a one-line `error: ...`."""


class UserError(Exception):
  """A mistake in what the user gave us (config, data, checkpoint, CLI).

  The message must say what is wrong and how to fix it, in one line. The CLI
  prints it as `error: <message>` and exits with status 2, without a traceback.
  """

  exit_code = 2
