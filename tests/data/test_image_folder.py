"""Image folders as a registered dataset (datasets.ImageFolder over prepare/image_folder.py),
and configs/imagefolder_cnn.py trained on MNIST test digits written as PNG files."""

import os
import time

import ml_collections
import numpy as np
import pytest
from PIL import Image

from lepton_jax import config_lib, train
from lepton_jax.data import base
from lepton_jax.data.prepare import image_folder, mnist
from lepton_jax.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MNIST_DIR = os.path.join(os.path.dirname(REPO), "shared", "data", "mnist")


def data_config(tmp_path, root, **kwargs):
  values = dict(name="image_folder", data_dir=str(tmp_path / "data"), manual_dir=str(root),
                image_size=(8, 8), channels=3, validation_fraction=0.25)
  values.update(kwargs)
  return ml_collections.ConfigDict(values)


def write_images(root, per_class=6, classes=("cat", "dog"), size=(10, 12), seed=0):
  rng = np.random.default_rng(seed)
  for c in classes:
    os.makedirs(root / c, exist_ok=True)
    for i in range(per_class):
      Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(root / c / f"{i}.png")


def test_settings_and_folders_do_not_collide(tmp_path):
  a, b = tmp_path / "a", tmp_path / "b"
  write_images(a)
  write_images(b)
  dirs = {base.build(data_config(tmp_path, root, **kw)).cache_dir()
          for root in (a, b) for kw in ({}, {"image_size": (4, 4)}, {"channels": 1})}
  assert len(dirs) == 6
  gray = base.build(data_config(tmp_path, a, channels=1))
  assert gray.read("train")["image"].shape[1:] == (8, 8, 1)
  assert gray.read("validation[:1]")["image"].shape == (1, 8, 8, 1)


def test_bad_folders_are_one_line_user_errors(tmp_path):
  def error(root, **kwargs):
    with pytest.raises(UserError) as e:
      base.build(data_config(tmp_path, root, **kwargs)).info()
    assert "\n" not in str(e.value)
    return str(e.value)

  assert "is not a directory" in error(tmp_path / "missing")
  empty = tmp_path / "empty"
  empty.mkdir()
  assert "no class sub-folders" in error(empty)
  (empty / "cat").mkdir()
  (empty / "dog").mkdir()
  (empty / "dog" / "readme.txt").write_text("x")
  assert "no image files" in error(empty)
  one = tmp_path / "one"
  write_images(one, classes=("cat",))
  assert "single class" in error(one)
  corrupt = tmp_path / "corrupt"
  for c in ("cat", "dog"):
    (corrupt / c).mkdir(parents=True)
    for i in range(4):
      (corrupt / c / f"{i}.jpg").write_bytes(b"garbage")
  assert "could be read" in error(corrupt)
  ok = tmp_path / "ok"
  write_images(ok)
  assert "image_size" in error(ok, image_size=(8,))
  assert "channels" in error(ok, channels=4)
  assert "validation_fraction" in error(ok, validation_fraction=0.0)
  assert "validation split would be empty" in error(ok, validation_fraction=1e-9)
  assert "jpeg_quality" in error(ok, jpeg_quality=101)
  assert "needs data.manual_dir" in error("")


@pytest.fixture(scope="module")
def mnist_png_folder(tmp_path_factory):
  """3,000 MNIST test digits as 28x28 PNG files in one folder per class."""
  if not os.path.isdir(MNIST_DIR):
    pytest.skip(f"needs the MNIST IDX files in {MNIST_DIR}")
  images = mnist.read_idx(os.path.join(MNIST_DIR, "t10k-images-idx3-ubyte.gz"), (10000, 28, 28), None)
  labels = mnist.read_idx(os.path.join(MNIST_DIR, "t10k-labels-idx1-ubyte.gz"), (10000,), None)
  root = tmp_path_factory.mktemp("mnist_png")
  for c in range(10):
    (root / str(c)).mkdir()
  for i in range(3000):
    Image.fromarray(images[i]).save(root / str(labels[i]) / f"{i:05d}.png")
  return root


def test_imagefolder_cnn_learns_mnist_pngs(mnist_png_folder, tmp_path, capsys):
  start = time.perf_counter()
  config = config_lib.load(os.path.join(REPO, "configs", "imagefolder_cnn.py") + ":" + str(mnist_png_folder))
  config_lib.apply_overrides(config, [
      ("data.data_dir", str(tmp_path / "data")), ("data.image_size", "28,28"), ("data.channels", "1"),
      ("num_epochs", "6"), ("batch_size", "64"), ("eval_every_steps", "1000"),
      ("checkpoint_every_steps", "1000")])
  result = train.train_and_evaluate(config, str(tmp_path / "workdir"))
  seconds = time.perf_counter() - start
  with capsys.disabled():
    print(f"\nimagefolder_cnn on 3,000 MNIST PNGs: validation accuracy {result['accuracy']:.4f} "
          f"after {result['step']} steps, {seconds:.0f}s including the preparation")
  assert result["accuracy"] >= 0.95
