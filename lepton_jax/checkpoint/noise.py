"""Keeping Orbax's and asyncio's noise out of a failed read's one-line warning.

When Orbax fails to read a corrupt checkpoint, TensorStore's reads still in flight complete after
Orbax has closed the event loop that awaited them; their callbacks then print tracebacks
("RuntimeError: Event loop is closed", "Exception ignored in: <coroutine ...>") straight to the
process's stderr, from C++ threads that no Python logging setting reaches. Around a read that
may fail, `quiet_failed_reads` sends file descriptor 2 to a temporary file and afterwards
passes on everything but those tracebacks, so the user sees only the warning that says which
checkpoint was skipped and why.
"""

import contextlib
import os
import sys
import tempfile

# A traceback block ending in one of these lines is noise of an abandoned read.
NOISE_ENDINGS = ("RuntimeError: Event loop is closed",)
NOISE_HEADERS = ("Exception ignored in: <coroutine",)


def strip_noise(text: str) -> str:
  """`text` without the traceback blocks of abandoned reads."""
  lines, kept, i = text.splitlines(keepends=True), [], 0
  while i < len(lines):
    if not lines[i].startswith(("Traceback (most recent call last)", "Exception ignored in")):
      kept.append(lines[i])
      i += 1
      continue
    j = i + 1  # a block: its header, indented frames, then the exception's line
    while j < len(lines) and lines[j].startswith((" ", "\t", "Traceback (most recent call last)")):
      j += 1
    block = lines[i:j + 1]
    if not _is_noise(block):
      kept += block
    i = j + 1
  return "".join(kept)


def _is_noise(block: list[str]) -> bool:
  return block[0].startswith(NOISE_HEADERS) or block[-1].strip() in NOISE_ENDINGS


@contextlib.contextmanager
def quiet_failed_reads():
  """Within: stderr (the file descriptor) is collected and passed on without the noise."""
  sys.stderr.flush()
  try:
    saved = os.dup(2)
  except OSError:  # no file descriptor 2 (some embedded interpreters): nothing to filter
    yield
    return
  with tempfile.TemporaryFile(mode="w+b") as capture:
    os.dup2(capture.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      capture.seek(0)
      text = strip_noise(capture.read().decode("utf-8", "replace"))
      if text:
        sys.stderr.write(text)
        sys.stderr.flush()
