"""`python -m lepton_jax.prepare_data`: one command prepares a dataset, alone or with others."""

import os
import subprocess
import sys

import pytest

from lepton_jax import prepare_data
from lepton_jax.data import records
from lepton_jax.errors import UserError

import records_testlib as lib


def test_records_of_a_config_with_overrides(tmp_path, capsys):
  lib.write_images(tmp_path / "pets", per_class=6)
  config = os.path.join(lib.REPO, "configs", "imagefolder_cnn.py") + f":{tmp_path / 'pets'}"
  assert prepare_data.main(["--config", config, "--data-dir",
                            str(tmp_path / "data"), "--config.data.image_size=8,8",
                            "--workers", "0"]) == 0
  out = capsys.readouterr()
  assert "preparing image folder" in out.err
  line = out.out.strip()
  assert line.startswith("image_folder is prepared in ") and "train" in line
  directory = line.split(" is prepared in ")[1].split(":")[0]
  manifest = records.read_manifest(directory)
  assert manifest.dataset_info().input_shape == (8, 8, 3)
  assert sum(manifest.dataset_info().split_sizes.values()) == 12


def test_bad_command_lines_are_user_errors(tmp_path):
  with pytest.raises(UserError, match="give --dataset NAME or --config FILE"):
    prepare_data.main(["--data-dir", str(tmp_path)])
  with pytest.raises(UserError, match="--config.data.seq_len needs --config FILE"):
    prepare_data.main(["--dataset", "digits", "--data-dir", str(tmp_path),
                       "--config.data.seq_len=3"])
  with pytest.raises(UserError, match="unknown dataset 'nope'"):
    prepare_data.main(["--dataset", "nope", "--data-dir", str(tmp_path)])
  with pytest.raises(UserError, match="--process-index 2 is not in"):
    prepare_data.main(["--dataset", "digits", "--data-dir", str(tmp_path),
                       "--process-index", "2", "--process-count", "2"])
  with pytest.raises(UserError, match="mount the bucket"):
    prepare_data.main(["--dataset", "digits", "--data-dir", "gs://b/x"])


def test_two_commands_on_one_fresh_data_dir_prepare_it_once_together(tmp_path):
  lib.write_images(tmp_path / "pets", per_class=300, size=(16, 16))  # 3 units of 256 files
  command = [sys.executable, "-m", "lepton_jax.prepare_data", "--dataset", "image_folder",
             "--manual-dir", str(tmp_path / "pets"), "--data-dir", str(tmp_path / "data"),
             "--workers", "0"]
  env = dict(os.environ, PYTHONPATH=lib.REPO)
  procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=lib.REPO) for _ in range(2)]
  outputs = [p.communicate(timeout=240) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outputs
  assert outputs[0][0] == outputs[1][0]  # the same dataset, directory and sizes
  directory = outputs[0][0].split(" is prepared in ")[1].split(":")[0]
  manifest = records.read_manifest(directory)
  assert sum(manifest.dataset_info().split_sizes.values()) == 600
  assert not [n for n in os.listdir(directory) if ".tmp." in n]
