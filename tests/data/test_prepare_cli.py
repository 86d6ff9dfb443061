"""`python -m lepton_jax.prepare_data --format records`: one command prepares a dataset."""

import os

import pytest

from lepton_jax import prepare_data
from lepton_jax.data import records
from lepton_jax.errors import UserError

import records_testlib as lib


def test_records_of_a_config_with_overrides(tmp_path, capsys):
  lib.write_images(tmp_path / "pets", per_class=6)
  config = os.path.join(lib.REPO, "configs", "imagefolder_cnn.py") + f":{tmp_path / 'pets'}"
  assert prepare_data.main(["--format", "records", "--config", config, "--data-dir",
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
    prepare_data.main(["--format", "records", "--data-dir", str(tmp_path)])
  with pytest.raises(UserError, match="--config.data.seq_len needs --config FILE"):
    prepare_data.main(["--dataset", "digits", "--data-dir", str(tmp_path),
                       "--config.data.seq_len=3"])
  with pytest.raises(UserError, match="dataset 'nope' is not prepared from local files"):
    prepare_data.main(["--format", "records", "--dataset", "nope", "--data-dir", str(tmp_path)])
  with pytest.raises(UserError, match="--process-index 2 is not in"):
    prepare_data.main(["--format", "records", "--dataset", "digits", "--data-dir", str(tmp_path),
                       "--process-index", "2", "--process-count", "2"])
  with pytest.raises(UserError, match="mount the bucket"):
    prepare_data.main(["--format", "records", "--dataset", "digits", "--data-dir", "gs://b/x"])
