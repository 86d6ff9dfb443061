"""Local formats are prepared and streamed with TensorFlow (and tensorflow-datasets) absent."""

import os

from lepton_jax.data.prepare.mnist import read_idx

import records_testlib as lib

# Every interpreter of the run (the test's and Grain's spawned workers) starts with TensorFlow
# made unimportable, as on a machine without it. lepton_jax/data/__init__.py still imports the
# tfds-based datasets until they switch to records, so the package is entered without it.
SITECUSTOMIZE = f"""
import sys, types
sys.modules["tensorflow"] = None
_data = types.ModuleType("lepton_jax.data")
_data.__path__ = [{os.path.join(lib.REPO, "lepton_jax", "data")!r}]
sys.modules["lepton_jax.data"] = _data
"""

SCRIPT = """
import sys
import numpy as np
import ml_collections
from lepton_jax.data import pipeline, sources, stream
from lepton_jax.data.prepare import core, formats

data_dir = sys.argv[1]
configs = {{
    "image_folder": dict(manual_dir=sys.argv[2], image_size=(8, 8), validation_fraction=0.25),
    "text_files": dict(files=sys.argv[3], seq_len=8, validation_fraction=0.2),
    "digits": {{}},
}}
if {mnist!r}:
  configs["mnist"] = dict(manual_dir={mnist!r})
layout = pipeline.ShardLayout.create(0, 0, 1)
for name, settings in configs.items():
  config = ml_collections.ConfigDict(dict(name=name, **settings))
  manifest = core.ensure(formats.preparer_for(config), data_dir, verbose=False)
  source = sources.RecordSource(manifest, "train")
  with stream.train_batches(source, layout, 4, seed=0) as batches:
    batch = next(batches)
  print(name, len(source), sorted(batch), flush=True)
  if name == "mnist":
    example = sources.RecordSource(manifest, "test")[4321]
    print("mnist test 4321:", int(example["image"].astype(np.int64).sum()), int(example["label"]))
# A spawned worker needs no TensorFlow either; an evaluation that ends right before the process
# does leaves no shared memory behind.
config = ml_collections.ConfigDict(dict(name="image_folder", **configs["image_folder"]))
source = sources.RecordSource(core.ensure(formats.preparer_for(config), data_dir), "validation")
for batch in stream.eval_batches(source, layout, 2, workers=1):
  pass
print("worker batch", sorted(batch), flush=True)
assert sys.modules["tensorflow"] is None
assert "tensorflow_datasets" not in sys.modules
print("ok")
"""


def test_prepare_and_stream_every_local_format_without_tensorflow(tmp_path):
  (tmp_path / "site").mkdir()
  (tmp_path / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
  lib.write_images(tmp_path / "images", per_class=8, size=(8, 8))
  (tmp_path / "a.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 20)
  mnist = lib.MNIST_DIR if os.path.isdir(lib.MNIST_DIR) else ""
  argv = [str(tmp_path / "data"), str(tmp_path / "images"), str(tmp_path / "a.txt")]
  result = lib.run_python(
      f"import sys; sys.argv = ['-', *{argv!r}]\n" + SCRIPT.format(mnist=mnist),
      env_extra={"PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), lib.REPO])})
  lines = result.stdout.splitlines()
  assert lines[-1] == "ok", result.stdout + result.stderr
  assert any(line.startswith("image_folder ") and "'image'" in line for line in lines)
  assert any(line.startswith("text_files ") and "'target_bytes'" in line for line in lines)
  if mnist:  # the IDX files' example, read back through records
    images = read_idx(os.path.join(mnist, "t10k-images-idx3-ubyte.gz"), (10000, 28, 28), None)
    labels = read_idx(os.path.join(mnist, "t10k-labels-idx1-ubyte.gz"), (10000,), None)
    assert "mnist 60000" in result.stdout
    assert f"mnist test 4321: {int(images[4321].astype(int).sum())} {labels[4321]}" in result.stdout
  assert "worker batch ['image', 'label', 'mask']" in result.stdout
  assert "tensorflow" not in result.stderr.lower()
  assert "leaked" not in result.stderr, result.stderr  # Python's resource tracker at exit
