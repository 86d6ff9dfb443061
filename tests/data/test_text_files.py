"""Local text files as byte-level LM windows (lepton_jax/data/text_files.py)."""

import os

import ml_collections
import numpy as np
import pytest

from lepton_jax.data import text_files
from lepton_jax.errors import UserError


def data_config(data_dir, **kwargs):
  values = dict(name="text_files", data_dir=data_dir, manual_dir="", files="", seq_len=8, stride=0,
                validation_fraction=0.25, preprocess=(), augment=(), train_split="train")
  values.update(kwargs)
  return ml_collections.ConfigDict(values)


@pytest.fixture
def text(tmp_path):
  folder = tmp_path / "corpus"
  folder.mkdir()
  a = bytes(range(256)) * 2 + "héllo wörld ✓\n".encode()  # any bytes, UTF-8 included
  b = b"0123456789" * 30
  (folder / "a.txt").write_bytes(a)
  (folder / "b.txt").write_bytes(b)
  (folder / ".hidden").write_bytes(b"never read")
  return folder, a + b


def test_windows_split_by_position_and_shift_by_one(tmp_path, text):
  folder, data = text
  dataset = text_files.TextFiles(data_config(str(tmp_path / "tfds"), files=str(folder / "*.txt")))
  info = dataset.info()
  assert (info.input_key, info.input_shape, info.num_classes, info.label_key) == ("tokens", (8,), 256, "targets")
  assert info.input_dtype == np.int32
  cut = int(round(len(data) * 0.75))
  train, val = np.frombuffer(data[:cut], np.uint8), np.frombuffer(data[cut:], np.uint8)
  assert info.split_sizes == {"train": (len(train) - 9) // 8 + 1, "validation": (len(val) - 9) // 8 + 1}
  for split, part in (("train", train), ("validation", val)):
    arrays = dataset.read(split)
    assert set(arrays) == {"tokens", "targets"}
    assert arrays["tokens"].dtype == np.int32 and arrays["tokens"].shape[1] == 8
    np.testing.assert_array_equal(arrays["tokens"][:, 1:], arrays["targets"][:, :-1])
    # Every window is a window of its own part of the bytes, at a multiple of the stride.
    expected = {part[i:i + 9].tobytes() for i in range(0, len(part) - 8, 8)}
    got = {np.concatenate([t, g[-1:]]).astype(np.uint8).tobytes()
           for t, g in zip(arrays["tokens"], arrays["targets"])}
    assert got == expected


def test_manual_dir_reads_every_visible_file_and_stride_overlaps(tmp_path, text):
  folder, data = text
  dataset = text_files.TextFiles(data_config(str(tmp_path / "tfds"), manual_dir=str(folder), stride=4))
  cut = int(round(len(data) * 0.75))
  assert dataset.info().split_sizes["train"] == (cut - 9) // 4 + 1


def test_a_changed_text_gets_its_own_dataset(tmp_path, text):
  folder, _ = text
  config = data_config(str(tmp_path / "tfds"), files=str(folder / "b.txt"))
  first = text_files.TextFiles(config).builder().data_dir
  (folder / "b.txt").write_bytes(b"abcdefghij" * 30)
  second = text_files.TextFiles(config).builder().data_dir
  assert first != second
  assert text_files.TextFiles(config).read("train")["tokens"].max() <= ord("j")


def test_stdlib_placeholder_expands_to_pythons_own_source():
  import sysconfig
  paths = text_files.find_files(ml_collections.ConfigDict({"files": "{stdlib}/os.py", "manual_dir": ""}))
  assert paths == [os.path.join(sysconfig.get_paths()["stdlib"], "os.py")]


def test_bad_input_is_a_one_line_user_error(tmp_path):
  short = tmp_path / "short.txt"
  short.write_bytes(b"tiny")
  cases = [
      (dict(files=str(tmp_path / "nothing*.txt")), "matches no files"),
      (dict(), "needs data.files"),
      (dict(files=str(short)), "fewer than one window"),
      (dict(files=str(short), seq_len=0), "seq_len must be a positive integer"),
      (dict(files=str(short), validation_fraction=1.0), "validation_fraction"),
      (dict(manual_dir=str(tmp_path / "missing")), "not a directory"),
  ]
  for kwargs, message in cases:
    with pytest.raises(UserError, match=message) as e:
      text_files.TextFiles(data_config(str(tmp_path / "tfds"), **kwargs)).info()
    assert "\n" not in str(e.value)
  # Long enough for train, but the validation tail is shorter than a window.
  short.write_bytes(b"x" * 40)
  with pytest.raises(UserError, match="validation split gets"):
    text_files.TextFiles(data_config(str(tmp_path / "tfds"), files=str(short), seq_len=16,
                                     validation_fraction=0.1)).info()
