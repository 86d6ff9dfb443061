"""Where logged values go: metrics.jsonl, TensorBoard event files, the console.

Only process 0 writes. `metrics.jsonl` holds one JSON object per line with
`step`, `split` and the metrics; TensorBoard's event files hold the same
scalars under WORKDIR/tensorboard/<split>/. On resume the rows and events after
the restored step are dropped first, from both, so every step appears once.
"""

import json
import math
import struct
import sys
import time
import types

from etils import epath


class MetricWriter:
  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    self.path = epath.Path(workdir) / "metrics.jsonl"
    self._tb_writers = {}
    self._tb_dir = epath.Path(workdir) / "tensorboard"

  def truncate_after(self, step: int) -> None:
    """Drops rows logged after `step` (they belong to work the resume will redo)."""
    if not self.enabled:
      return
    if not self.path.exists():
      truncate_event_files(self._tb_dir, step)
      return
    kept = [line for line in self.path.read_text().splitlines()
            if (row := _parse_row(line)) is not None and row["step"] <= step]
    # Write a new file and rename it over the old one: a kill during the rewrite leaves either
    # the old rows or the new ones, never a half-written file.
    partial = self.path.parent / (self.path.name + ".partial")
    partial.write_text("".join(line + "\n" for line in kept))
    partial.replace(self.path)
    truncate_event_files(self._tb_dir, step)

  def write(self, step: int, split: str, metrics: dict) -> None:
    if not self.enabled:
      return
    row = {"step": int(step), "split": split}
    row.update({k: _plain(v) for k, v in metrics.items()})
    with self.path.open("a") as f:
      f.write(json.dumps(row) + "\n")
    # TensorBoard's own event writer, without TensorFlow ops: ~1 ms a row instead of ~7 ms
    # with tf.summary, which the step would otherwise wait for at every log.
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.scalar import summary_v2
    values = [value for key, x in row.items()
              if key not in ("step", "split") and isinstance(x, (int, float))
              for value in summary_v2.scalar_pb(key, float(x)).value]
    writer = self._tb_writer(split)
    writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                     summary=summary_pb2.Summary(value=values)))
    writer.flush()

  def _tb_writer(self, split: str):
    if split not in self._tb_writers:
      if "://" not in str(self._tb_dir):
        _tensorboard_without_tensorflow()
      from tensorboard.summary.writer.event_file_writer import EventFileWriter
      self._tb_writers[split] = EventFileWriter(str(self._tb_dir / split))
    return self._tb_writers[split]

  def close(self) -> None:
    for writer in self._tb_writers.values():
      writer.close()
    self._tb_writers = {}


def _tensorboard_without_tensorflow() -> None:
  """Makes TensorBoard's writer use its own file layer, not TensorFlow's, which it imports when
  installed: local files need none, and importing TensorFlow costs seconds, hundreds of MB and
  start-up lines on stderr. (TensorBoard checks for the module `tensorboard.compat.notf`.)"""
  sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))


# A rewritten event file is written under this prefix, then renamed over the original. TensorBoard
# reads only names containing "tfevents", so a rewrite cut short by a kill is never read as data.
_REWRITE_PREFIX = ".rewrite-"


def _event_records(data: bytes):
  """(framed record, payload) of each complete, intact TFRecord in `data`, up to the first torn or
  corrupt one (a kill mid-write leaves a partial last record)."""
  from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
  pos = 0
  while pos + 12 <= len(data):
    header = data[pos:pos + 8]
    (length,) = struct.unpack("<Q", header)
    end = pos + 12 + length + 4
    if end > len(data) or struct.unpack("<I", data[pos + 8:pos + 12])[0] != masked_crc32c(header):
      return
    payload = data[pos + 12:pos + 12 + length]
    if struct.unpack("<I", data[end - 4:end])[0] != masked_crc32c(payload):
      return
    yield data[pos:end], payload
    pos = end


def truncate_event_file(path: epath.Path, step: int) -> None:
  """Drops the events after `step` from one TensorBoard event file: the kept records are written
  to a new file that replaces the old one in one rename, so a kill never loses them."""
  from tensorboard.compat.proto import event_pb2
  data = path.read_bytes()
  records = list(_event_records(data))
  kept = [framed for framed, payload in records if event_pb2.Event.FromString(payload).step <= step]
  if len(kept) == len(records) and sum(map(len, kept)) == len(data):
    return  # nothing after `step`, nothing torn
  partial = path.parent / (_REWRITE_PREFIX + path.name.replace("tfevents", "events"))
  partial.write_bytes(b"".join(kept))
  partial.replace(path)


def truncate_event_files(tb_dir: epath.Path, step: int) -> None:
  """`truncate_event_file` for every event file of every split under `tb_dir`."""
  if not tb_dir.exists():
    return
  for split_dir in (p for p in tb_dir.iterdir() if p.is_dir()):
    names = list(split_dir.iterdir())
    for path in names:
      if path.name.startswith(_REWRITE_PREFIX):
        path.unlink(missing_ok=True)  # a rewrite a kill cut short; its original is intact
    for path in names:
      if "tfevents" in path.name:
        truncate_event_file(path, step)


def _plain(value):
  value = value.item() if hasattr(value, "item") else value
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)  # JSON has no NaN/inf; keep them readable
  return value


def read_metrics(workdir: str) -> list[dict]:
  path = epath.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  return [row for row in map(_parse_row, path.read_text().splitlines()) if row is not None]


def _parse_row(line: str) -> dict | None:
  """One metrics.jsonl row, or None for a blank line or one a kill cut short mid-write."""
  try:
    return json.loads(line) if line.strip() else None
  except json.JSONDecodeError:
    return None


def format_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class ProgressLine:
  """A live one-line status: step/total, loss, examples/s, ETA.

  On a terminal the line is redrawn in place; elsewhere (logs, CI, notebooks)
  each update is its own line.
  """

  def __init__(self, total_steps: int, enabled: bool = True, stream=None):
    self.total = total_steps
    self.enabled = enabled
    self.stream = stream or sys.stdout
    self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
    self._open = False

  def update(self, step: int, fields: dict, seconds_per_step: float,
             eta_seconds: float | None = None) -> None:
    """Shows `fields` at `step`; the ETA is `eta_seconds` (see lepton_jax.eta) if given, else
    the train steps left at `seconds_per_step`."""
    if not self.enabled:
      return
    left = (self.total - step) * seconds_per_step if eta_seconds is None else eta_seconds
    eta = format_duration(left)
    parts = [f"step {step}/{self.total}"]
    parts += [f"{k} {format_number(v)}" for k, v in fields.items()]
    parts.append(f"ETA {eta}")
    line = " | ".join(parts)
    if self.tty:
      self.stream.write("\r\033[K" + line)
      self._open = True
    else:
      self.stream.write(line + "\n")
    self.stream.flush()

  def print(self, text: str) -> None:
    """A message that must not be overwritten by the next update."""
    if not self.enabled:
      return
    if self._open:
      self.stream.write("\n")
      self._open = False
    self.stream.write(text + "\n")
    self.stream.flush()


def format_number(value):
  """A number for people: thousands separators for large ones (never an exponent), four decimals
  for small ones, an exponent only below 0.001."""
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return str(value)
  if isinstance(value, int):
    return f"{value:,}"
  if not math.isfinite(value):
    return str(value)
  if abs(value) >= 100:
    return f"{value:,.0f}"
  if value != 0 and abs(value) < 1e-3:
    return f"{value:.3e}"
  return f"{value:,.4f}"


class Timer:
  def __init__(self):
    self.start = time.perf_counter()

  def elapsed(self) -> float:
    return time.perf_counter() - self.start
