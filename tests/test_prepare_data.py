import os

import pytest

from lepton_jax import prepare_data
from lepton_jax.data import records
from lepton_jax.errors import UserError


def test_prepares_a_dataset_into_a_data_dir(tmp_path, capsys, monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "default"))
  assert prepare_data.main(["--dataset", "breast_cancer"]) == 0
  out = capsys.readouterr()
  directory = str(tmp_path / "default" / "breast_cancer" / "v1")
  assert f"breast_cancer is prepared in {directory}: test 114, train 455" in out.out
  assert f"preparing scikit-learn's breast cancer set into {directory}" in out.err
  manifest = records.read_manifest(directory)
  assert manifest.dataset_info().split_sizes == {"train": 455, "test": 114}
  assert prepare_data.main(["--dataset", "breast_cancer", "--data-dir",
                            str(tmp_path / "other")]) == 0
  assert os.path.exists(tmp_path / "other" / "breast_cancer" / "v1" / records.MANIFEST)


def test_unknown_dataset_is_a_user_error(tmp_path):
  with pytest.raises(UserError, match="unknown dataset 'breast'"):
    prepare_data.main(["--dataset", "breast", "--data-dir", str(tmp_path)])
