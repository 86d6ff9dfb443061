"""Keeping Orbax's and asyncio's noise out of a failed read's one-line warning.

When Orbax fails to read a corrupt checkpoint, TensorStore's reads still in flight complete after
Orbax has closed the event loop that awaited them; their callbacks then print tracebacks
("RuntimeError: Event loop is closed", "Exception ignored in: <coroutine ...>") straight to the
process's stderr, from C++ threads that no Python logging setting reaches. Around a read that
may fail, `quiet_failed_reads` sends file descriptor 2 to a temporary file and afterwards
passes on everything but those tracebacks, so the user sees only the warning that says which
checkpoint was skipped and why.
"""

import asyncio
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


def _abandoned_write(unraisable) -> bool:
  """An Orbax or TensorStore coroutine collected without finishing (a failed save's writes,
  dropped when the process stops): nothing the user can act on."""
  code = getattr(unraisable.object, "cr_code", None)
  return code is not None and any(m in code.co_filename for m in ("orbax", "tensorstore"))


def _drop_callbacks_on_closed_loops() -> None:
  """When Orbax gives up on a read or write, it closes the event loop that awaited TensorStore
  while other TensorStore operations are still in flight; when those finish, TensorStore's
  threads call `loop.call_soon_threadsafe` on the closed loop, and the RuntimeError is printed
  from C++ with a traceback. A closed loop can run nothing: the callback is dropped instead."""
  loop_class = asyncio.base_events.BaseEventLoop
  original = loop_class.call_soon_threadsafe
  if getattr(original, "lepton_quiet", False):
    return

  def call_soon_threadsafe(self, callback, *args, **kwargs):
    if self.is_closed():
      return None
    return original(self, callback, *args, **kwargs)

  call_soon_threadsafe.lepton_quiet = True
  loop_class.call_soon_threadsafe = call_soon_threadsafe


def ignore_abandoned_writes() -> None:
  """Leaves the unraisable exceptions of abandoned writes unprinted; every other goes to the
  hook that was installed before (idempotent)."""
  previous = sys.unraisablehook
  if getattr(previous, "lepton_quiet", False):
    return

  def hook(unraisable):
    if not _abandoned_write(unraisable):
      previous(unraisable)

  hook.lepton_quiet = True
  sys.unraisablehook = hook
  _drop_callbacks_on_closed_loops()
