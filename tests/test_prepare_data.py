import pytest

from lepton_jax import prepare_data
from lepton_jax.errors import UserError


def test_prepares_a_dataset_into_a_data_dir(tmp_path, capsys):
  assert prepare_data.main(["--dataset", "breast_cancer", "--data-dir", str(tmp_path)]) == 0
  assert "breast_cancer is prepared in" in capsys.readouterr().out
  assert (tmp_path / "breast_cancer" / "1.0.0" / "dataset_info.json").exists()


def test_unknown_dataset_is_a_user_error(tmp_path):
  with pytest.raises(UserError, match="unknown dataset 'breast'"):
    prepare_data.main(["--dataset", "breast", "--data-dir", str(tmp_path)])
