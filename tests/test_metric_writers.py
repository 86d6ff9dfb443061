import io
import json

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
