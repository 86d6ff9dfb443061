"""One progress line for a long preparation: count, rate and time left.

On a terminal the line is rewritten in place; in a log (not a terminal) a full line is
printed every `interval` seconds, with no control characters.
"""

import time


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
  """Counts done items of `total` (`done` of them by earlier runs); `log` None: silent."""

  def __init__(self, name: str, total: int, noun: str, log, interval: float = 10.0,
               done: int = 0):
    self.name, self.total, self.noun, self.log = name, total, noun, log
    self.interval = interval
    self.done = self._start_done = done  # resumed items cost this run no time
    self._start = self._last = time.monotonic()
    self._shown = None  # the count of the last line shown
    self._terminal = bool(log is not None and getattr(log, "isatty", lambda: False)())

  def line(self) -> str:
    elapsed = time.monotonic() - self._start
    fresh = self.done - self._start_done
    rate = fresh / elapsed if elapsed > 0 else 0.0
    text = f"{self.name}: {self.done:,}/{self.total:,} {self.noun}"
    if self.total:
      text += f" ({100 * self.done // self.total}%)"
    if fresh and rate > 0:
      text += f", {rate:,.0f} {self.noun}/s, ETA {_duration((self.total - self.done) / rate)}"
    return text

  def advance(self, n: int) -> None:
    self.done += n
    now = time.monotonic()
    if self.log is not None and (self._terminal or now - self._last >= self.interval):
      self._emit(final=False)
      self._last = now

  def finish(self) -> None:
    if self.log is not None and (self._shown != self.done or self._terminal):
      self._emit(final=True)

  def _emit(self, final: bool) -> None:
    self._shown = self.done
    if self._terminal:
      end = "\n" if final else ""
      print(f"\r{self.line()}\033[K", end=end, file=self.log, flush=True)
    else:
      print(self.line(), file=self.log, flush=True)
