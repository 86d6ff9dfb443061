"""The notebooks run top to bottom on CPU, with their parameters cell overridden
to keep them short, and are stored without outputs."""

import json
import os
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(REPO, "notebooks")
NAMES = ("quickstart", "custom_dataset", "tpu_colab")
CELL_TIMEOUT = 240  # seconds per cell; a whole notebook takes well under a minute unloaded


def load(name):
  return nbformat.read(os.path.join(NOTEBOOKS, f"{name}.ipynb"), as_version=4)


def parameters_cell(nb):
  cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
  assert len(cells) == 1, "a notebook needs exactly one cell tagged 'parameters'"
  return cells[0]


@pytest.mark.parametrize("name", NAMES)
def test_stored_clean(name):
  nb = load(name)
  nbformat.validate(nb)
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert cell.outputs == [] and cell.execution_count is None, (
          f"notebooks/{name}.ipynb is stored with outputs: clear them (e.g. `jupyter nbconvert "
          f"--clear-output --inplace notebooks/{name}.ipynb`)")
  params = parameters_cell(nb).source
  assert "NUM_STEPS =" in params and "WORKDIR =" in params and "DATA_DIR =" in params
  assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
  """A `python3` kernelspec running this interpreter (the venv's), found first."""
  root = tmp_path_factory.mktemp("jupyter")
  spec_dir = root / "kernels" / "python3"
  spec_dir.mkdir(parents=True)
  (spec_dir / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      "display_name": "Python 3 (lepton_jax tests)", "language": "python"}))
  return {"JUPYTER_PATH": str(root), "JAX_PLATFORMS": "cpu",
          "TF_CPP_MIN_LOG_LEVEL": "2"}


OVERRIDES = {
    "quickstart": {"NUM_STEPS": 30},
    "custom_dataset": {"NUM_STEPS": 40},
    "tpu_colab": {"NUM_STEPS": 24, "PER_DEVICE_BATCH": 8},
}
# The TPU notebook on 4 simulated CPU devices exercises the multi-device path.
EXTRA_ENV = {"tpu_colab": {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}}


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name, tmp_path, data_dir, kernel_env, monkeypatch):
  nb = load(name)
  cell = parameters_cell(nb)
  values = dict(OVERRIDES[name], WORKDIR=str(tmp_path / "workdir"), DATA_DIR=data_dir)
  if "FOLDER =" in cell.source:
    values["FOLDER"] = str(tmp_path / "images")
  cell.source += "\n# injected by tests/test_notebooks.py\n" + "".join(
      f"{k} = {v!r}\n" for k, v in values.items())
  for key, value in {**kernel_env, **EXTRA_ENV.get(name, {})}.items():
    monkeypatch.setenv(key, value)
  monkeypatch.delenv("MPLBACKEND", raising=False)  # figures must come back inline

  client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT,
                                   resources={"metadata": {"path": NOTEBOOKS}})
  start = time.time()
  try:
    client.execute()
  except nbclient.exceptions.CellExecutionError as e:
    pytest.fail(f"notebooks/{name}.ipynb failed:\n{str(e)[-4000:]}")
  elapsed = time.time() - start

  text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
  assert os.path.exists(tmp_path / "workdir"), text[-2000:]
  images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if "image/png" in o.get("data", {})]
  if name == "quickstart":
    assert len(images) == 2, "the quickstart shows the curves and the predicted digits"
    assert "of 12 right" in text
  if name == "custom_dataset":
    assert "resolved preprocessing: ('normalize(mean=" in text, text[-2000:]
  if name == "tpu_colab":
    assert "backend cpu: 4 device(s)" in text, text[-2000:]
    assert "fsdp: test accuracy" in text, text[-2000:]
  print(f"notebooks/{name}.ipynb ran in {elapsed:.0f}s")
