import io
import json

import pytest
from etils import epath

from lepton_jax import metric_writers


def test_rows_are_jsonl_and_tensorboard_readable(tmp_path):
  writer = metric_writers.MetricWriter(str(tmp_path))
  writer.write(1, "train", {"loss": 2.5, "accuracy": float("nan")})
  writer.write(2, "test", {"loss": 1.5})
  writer.close()
  assert metric_writers.read_metrics(str(tmp_path)) == [
      {"step": 1, "split": "train", "loss": 2.5, "accuracy": "nan"},
      {"step": 2, "split": "test", "loss": 1.5}]
  assert list((tmp_path / "tensorboard" / "train").iterdir())


def test_truncate_after_drops_later_rows_and_a_torn_last_line(tmp_path):
  path = tmp_path / "metrics.jsonl"
  rows = [{"step": s, "split": "train", "loss": float(s)} for s in (1, 2, 3, 4)]
  path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 5, "spl')
  assert [r["step"] for r in metric_writers.read_metrics(str(tmp_path))] == [1, 2, 3, 4]

  metric_writers.MetricWriter(str(tmp_path)).truncate_after(2)

  assert metric_writers.read_metrics(str(tmp_path)) == rows[:2]
  assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]  # no temp file left


def test_progress_line_prints_one_line_per_update_off_a_terminal():
  stream = io.StringIO()
  progress = metric_writers.ProgressLine(100, stream=stream)
  progress.update(10, {"loss": 0.12345, "ex/s": 2000.0}, seconds_per_step=0.5)
  progress.print("eval done")
  assert stream.getvalue().splitlines() == [
      "step 10/100 | loss 0.1235 | ex/s 2,000 | ETA 45s", "eval done"]


def _tensorboard_scalars(split_dir) -> list[tuple[int, str, float]]:
  """(step, tag, value) of every scalar in a split's event files, read by TensorBoard's loader."""
  from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
  from tensorboard.util import tensor_util
  out = []
  for path in sorted(p for p in split_dir.iterdir() if "tfevents" in p.name):
    for event in EventFileLoader(str(path)).Load():
      for value in event.summary.value:
        out.append((event.step, value.tag, float(tensor_util.make_ndarray(value.tensor))))
  return out


def _log(workdir, steps, resume_from=None):
  writer = metric_writers.MetricWriter(str(workdir))
  if resume_from is not None:
    writer.truncate_after(resume_from)
  for step in steps:
    writer.write(step, "train", {"loss": float(step)})
    if step % 2 == 0:
      writer.write(step, "test", {"accuracy": step / 10})
  writer.close()


def test_resume_leaves_each_step_once_in_tensorboard(tmp_path):
  _log(tmp_path, range(1, 7))
  _log(tmp_path, range(4, 9), resume_from=3)  # steps 4-6 are trained (and logged) again
  train = _tensorboard_scalars(tmp_path / "tensorboard" / "train")
  assert train == [(s, "loss", float(s)) for s in range(1, 9)]
  test = _tensorboard_scalars(tmp_path / "tensorboard" / "test")
  assert test == [(s, "accuracy", pytest.approx(s / 10)) for s in (2, 4, 6, 8)]
  assert [r["step"] for r in metric_writers.read_metrics(str(tmp_path)) if r["split"] == "train"] == \
      list(range(1, 9))


def test_a_kill_mid_rewrite_loses_no_kept_event(tmp_path, monkeypatch):
  writer = metric_writers.MetricWriter(str(tmp_path))
  for step in range(1, 7):
    writer.write(step, "train", {"loss": float(step)})
  writer.close()
  split_dir = tmp_path / "tensorboard" / "train"
  before = _tensorboard_scalars(split_dir)

  def killed(self, target):
    raise KeyboardInterrupt("killed before the rename")

  monkeypatch.setattr(type(epath.Path(str(split_dir))), "replace", killed)
  with pytest.raises(KeyboardInterrupt):
    metric_writers.truncate_event_files(epath.Path(str(tmp_path / "tensorboard")), 3)
  monkeypatch.undo()
  assert _tensorboard_scalars(split_dir) == before  # the half-done rewrite is not read as events
  assert any(p.name.startswith(".rewrite-") for p in split_dir.iterdir())

  metric_writers.MetricWriter(str(tmp_path)).truncate_after(3)  # the resume that follows
  assert _tensorboard_scalars(split_dir) == before[:3]
  assert not any(p.name.startswith(".rewrite-") for p in split_dir.iterdir())


def test_a_torn_last_event_is_dropped_and_the_rest_kept(tmp_path):
  _log(tmp_path, range(1, 4))
  split_dir = tmp_path / "tensorboard" / "train"
  (path,) = [p for p in split_dir.iterdir() if "tfevents" in p.name]
  path.write_bytes(path.read_bytes()[:-7])  # a kill in the middle of the last record
  metric_writers.MetricWriter(str(tmp_path)).truncate_after(2)
  assert _tensorboard_scalars(split_dir) == [(1, "loss", 1.0), (2, "loss", 2.0)]
  metric_writers.MetricWriter(str(tmp_path)).truncate_after(1)
  assert _tensorboard_scalars(split_dir) == [(1, "loss", 1.0)]


def test_numbers_are_formatted_alike_large_and_small():
  fmt = metric_writers.format_number
  assert fmt(109_500.4) == "109,500" and fmt(9_010.2) == "9,010" and fmt(123_456_789) == "123,456,789"
  assert fmt(0.12345) == "0.1235" and fmt(0.0001234) == "1.234e-04" and fmt(0.0) == "0.0000"
  assert fmt(float("nan")) == "nan" and fmt("3.2ms") == "3.2ms"


def test_progress_line_shows_the_given_eta():
  stream = io.StringIO()
  progress = metric_writers.ProgressLine(100, stream=stream)
  progress.update(10, {"ex/s": 109_512.0}, seconds_per_step=0.5, eta_seconds=3725)
  assert stream.getvalue() == "step 10/100 | ex/s 109,512 | ETA 1h02m05s\n"
