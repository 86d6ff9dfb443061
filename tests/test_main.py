"""The CLI's bad-input paths: one line `error: ...`, exit status 2, no traceback."""

import gzip
import os
import subprocess
import sys

import numpy as np
import pytest

from lepton_jax import main
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

QUICKSTART = os.path.join(REPO, "configs", "quickstart.py")
MNIST = os.path.join(REPO, "configs", "mnist_cnn.py")


def run_cli(argv, capsys):
  with pytest.raises(SystemExit) as e:
    main.run(argv)
  out, err = capsys.readouterr()
  return e.value.code, out, err


def assert_one_line_error(code, err, *fragments):
  assert code == 2, err
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), err
  assert "Traceback" not in err
  for fragment in fragments:
    assert fragment in lines[0], lines[0]


def test_list_prints_every_registered_name(capsys):
  code, out, _ = run_cli(["--list"], capsys)
  assert code == 0
  from lepton_jax import registry
  for kind in registry.KINDS:
    for name in registry.names(kind):
      assert f"  {name}" in out


@pytest.mark.parametrize("override,fragments", [
    ("--config.optimizer.lerning_rate=0.1", ["unknown config key 'optimizer.lerning_rate'",
                                             "did you mean optimizer.learning_rate"]),
    ("--config.model.name=cnm", ["unknown model 'cnm'", "closest first): cnn"]),
    ("--config.optimizer.name=adamm", ["unknown optimizer 'adamm'", "adam"]),
    ("--config.data.name=digitz", ["unknown dataset 'digitz'", "digits"]),
    ("--config.batch_size=big", ["--config.batch_size='big': expected an integer"]),
    ("--config.data.preprocess=blur", ["unknown op 'blur'"]),
    ("--config.model.widht=3", ["unknown config key 'model.widht'"]),
    ("--config.eval_every_steps=-5", ["eval_every_steps=-5 is not a step count",
                                      "-1 (once per epoch) or 0 (only at the end)"]),
])
def test_bad_config_values(override, fragments, capsys, tmp_path, data_dir):
  code, _, err = run_cli(["--config", QUICKSTART, "--workdir", str(tmp_path),
                          f"--config.data.data_dir={data_dir}", override], capsys)
  assert_one_line_error(code, err, *fragments)


def test_missing_config_and_flags(capsys, tmp_path):
  assert_one_line_error(*run_cli(["--config", "configs/nope.py", "--workdir", str(tmp_path)], capsys)[::2],
                        "config file 'configs/nope.py' does not exist")
  assert_one_line_error(*run_cli(["--config", QUICKSTART], capsys)[::2], "--workdir is required")
  assert_one_line_error(*run_cli(["--bogus"], capsys)[::2], "unrecognized arguments: --bogus")


def test_unwritable_workdir(capsys, tmp_path, data_dir):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  code, _, err = run_cli(["--config", QUICKSTART, "--workdir", str(blocker / "run"),
                          f"--config.data.data_dir={data_dir}"], capsys)
  assert_one_line_error(code, err, "is not writable", "choose another --workdir")


def test_missing_dataset_dir(capsys, tmp_path):
  code, _, err = run_cli(["--config", MNIST, "--workdir", str(tmp_path / "w"),
                          f"--config.data.data_dir={tmp_path / 'data'}",
                          f"--config.data.manual_dir={tmp_path / 'no_such_dir'}"], capsys)
  assert_one_line_error(code, err, "is not a directory")


def _write_idx(path, array):
  header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("problem,fragments", [
    ("missing", ["lacks t10k-labels-idx1-ubyte[.gz]"]),
    ("checksum", ["does not match the original's checksum"]),
    ("not_idx", ["cannot read MNIST file"]),
])
def test_malformed_mnist_dir(problem, fragments, capsys, tmp_path):
  manual = tmp_path / "mnist"
  manual.mkdir()
  _write_idx(manual / "train-images-idx3-ubyte.gz", np.zeros((5, 28, 28)))
  _write_idx(manual / "train-labels-idx1-ubyte.gz", np.zeros((5,)))
  _write_idx(manual / "t10k-images-idx3-ubyte.gz", np.zeros((5, 28, 28)))
  if problem != "missing":
    _write_idx(manual / "t10k-labels-idx1-ubyte.gz", np.zeros((5,)))
  if problem == "not_idx":
    (manual / "train-images-idx3-ubyte.gz").write_bytes(b"garbage that is not gzip")
  code, _, err = run_cli(["--config", MNIST, "--workdir", str(tmp_path / "w"),
                          f"--config.data.data_dir={tmp_path / 'data'}",
                          f"--config.data.manual_dir={manual}"], capsys)
  assert_one_line_error(code, err, *fragments)


def test_wrong_idx_shape_is_named():
  from lepton_jax.data.prepare import mnist
  from lepton_jax.errors import UserError
  import tempfile
  with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "train-labels-idx1-ubyte.gz")
    _write_idx(path, np.zeros((7,)))
    with pytest.raises(UserError, match=r"holds shape \(7,\), expected \(60000,\)"):
      mnist.read_idx(path, (60000,), None)


def test_real_cli_process_prints_one_line(tmp_path):
  """The same path through a real `python -m lepton_jax.main` process."""
  proc = subprocess.run(
      [sys.executable, "-m", "lepton_jax.main", "--config", QUICKSTART, "--workdir", str(tmp_path),
       "--config.optimizer.learning_rat=1"], capture_output=True, text=True, timeout=120, cwd=REPO)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith("error: unknown config key")
  assert "Traceback" not in proc.stderr
