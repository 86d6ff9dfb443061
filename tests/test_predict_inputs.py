"""lepton_jax.predict_inputs: images converted to fit the model are noted, or refused (--strict)."""

import types

import numpy as np
import pytest
from PIL import Image

from lepton_jax import predict, predict_inputs
from lepton_jax.data.info import DatasetInfo
from lepton_jax.errors import UserError


class Digits(predict_inputs.InputFiles):
  """The input side of an 8x8 grayscale digit model."""

  input_shape = (8, 8, 1)
  input_dtype = np.dtype(np.uint8)


@pytest.fixture
def images(tmp_path):
  rng = np.random.default_rng(0)
  for i in range(3):
    Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(tmp_path / f"photo{i}.png")
  Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(tmp_path / "big_gray.png")
  Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "small_rgb.png")
  Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / "exact.png")
  return tmp_path


def test_one_note_per_kind_of_conversion(images):
  conversions = predict_inputs.Conversions()
  names, batch = Digits().load_inputs([str(images)], conversions)
  assert batch.shape == (6, 8, 8, 1) and len(names) == 6
  assert sorted(conversions.notes()) == sorted([
      "note: resized and converted 3 images from 640x480 RGB to 8x8 L (the model's input)",
      "note: resized 1 image from 16x16 L to 8x8 L (the model's input)",
      "note: converted 1 image from 8x8 RGB to 8x8 L (the model's input)"])


def test_an_image_that_fits_needs_no_note(images):
  conversions = predict_inputs.Conversions(strict=True)
  Digits().load_inputs([str(images / "exact.png")], conversions)
  assert conversions.notes() == []


@pytest.mark.parametrize("name,source,what", [
    ("photo0.png", "640x480 RGB", "resized and converted"),
    ("big_gray.png", "16x16 L", "resized"),
    ("small_rgb.png", "8x8 RGB", "converted")])
def test_strict_refuses_the_first_conversion_naming_file_and_conversion(images, name, source, what):
  with pytest.raises(UserError) as e:
    Digits().load_inputs([str(images / "exact.png"), str(images / name)],
                         predict_inputs.Conversions(strict=True))
  assert str(e.value) == (f"{images / name}: is {source}, the model takes 8x8 L; --strict refuses "
                          f"inputs that would be {what}: give 8x8 L images, or drop --strict")


class FakePredictor(predict.Predictor):
  """predict.Predictor's file handling and output over a stand-in model that answers uniformly."""

  def __init__(self):  # no workdir, checkpoint or model
    self.info = DatasetInfo(name="digits", input_key="image", input_shape=(8, 8, 1),
                            input_dtype=np.dtype(np.uint8), num_classes=10, split_sizes={})
    self.experiment = types.SimpleNamespace(generative=False, binary=False)
    self.config = types.SimpleNamespace(experiment="classification")
    self.step = 0

  def predict(self, batch, batch_size=None):
    return np.full((len(self.check_batch(batch)), 10), 0.1, np.float32)


def test_predict_cli_prints_the_notes_and_strict_refuses(images, monkeypatch, capsys):
  monkeypatch.setattr(predict, "load", lambda *args, **kwargs: FakePredictor())
  photo = str(images / "photo1.png")
  assert predict.main(["--workdir", "unused", photo]) == 0
  out, err = capsys.readouterr()
  assert out.startswith(photo + ": ")
  assert err == "note: resized and converted 1 image from 640x480 RGB to 8x8 L (the model's input)\n"
  with pytest.raises(UserError, match=r"photo1\.png: is 640x480 RGB, the model takes 8x8 L; --strict"):
    predict.main(["--workdir", "unused", "--strict", photo])
