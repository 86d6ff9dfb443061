"""Image folders prepared into records (lepton_jax/data/prepare/): exact pixels, both layouts,
bad files, changed folders, killed and concurrent preparations."""

import hashlib
import os
import signal
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from lepton_jax.data import records, sources
from lepton_jax.data.prepare import core, image_folder
from lepton_jax.errors import UserError

import records_testlib as lib


def prepare(root, data_dir, verbose=False, **kwargs):
  settings = dict(image_size=(8, 8), channels=3, validation_fraction=0.25, unit_size=4)
  settings.update(kwargs)
  return core.ensure(image_folder.ImageFolder(str(root), **settings), str(data_dir), verbose=verbose)


def split_examples(manifest, split):
  source = sources.RecordSource(manifest, split)
  return [source[i] for i in range(len(source))]


def expected_split(root, split, fraction=0.25, skip=()):
  """(relative path, label) of a split by today's rule: sorted paths, hashed validation split."""
  files = []
  for label, c in enumerate(sorted(os.listdir(root))):
    for name in sorted(os.listdir(os.path.join(root, c))):
      rel = f"{c}/{name}"
      digest = int.from_bytes(hashlib.sha256(rel.encode()).digest()[:8], "big") / 2.0**64
      if (digest < fraction) == (split == "validation") and rel not in skip:
        files.append((rel, label))
  return files


def bomb_png(path, width=100_000, height=100_000):
  """A 1x1 PNG whose header claims width x height pixels (a decompression-bomb header)."""
  Image.new("RGB", (1, 1)).save(path)
  raw = bytearray(open(path, "rb").read())
  ihdr = raw[12:29]  # chunk type + data of IHDR
  ihdr[4:12] = struct.pack(">II", width, height)
  raw[12:29] = ihdr
  raw[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
  open(path, "wb").write(bytes(raw))


def test_folder_becomes_records_with_todays_pixels_and_split(tmp_path, capsys):
  root = tmp_path / "pets"
  lib.write_images(root, per_class=10)
  Image.new("L", (50, 20), 200).save(root / "cat" / "big_gray.jpg")
  Image.new("RGBA", (3, 3), (1, 2, 3, 4)).save(root / "dog" / "tiny.PNG")
  Image.fromarray(np.full((8, 8, 3), 77, np.uint8)).save(root / "dog" / "exact.jpg")
  (root / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
  (root / "dog" / "empty.jpg").write_bytes(b"")
  bomb_png(root / "cat" / "bomb.png")
  (root / "dog" / "notes.txt").write_text("not an image")
  manifest = prepare(root, tmp_path / "data", verbose=True)
  err = capsys.readouterr().err
  assert "skipped 3 unreadable files" in err
  for name in ("dog/broken.png", "dog/empty.jpg", "cat/bomb.png (DecompressionBombError"):
    assert name in err
  info = manifest.dataset_info()
  assert info.label_names == ("cat", "dog") and info.input_shape == (8, 8, 3)
  bad = {"dog/broken.png", "dog/empty.jpg", "cat/bomb.png"}
  for split in ("train", "validation"):
    expected = expected_split(root, split, skip=bad | {"dog/notes.txt"})
    got = split_examples(manifest, split)
    assert info.split_sizes[split] == len(got) == len(expected) > 0
    for (rel, label), example in zip(expected, got):
      np.testing.assert_array_equal(
          example["image"], image_folder.load_image(str(root / rel), (8, 8), 3), err_msg=rel)
      assert example["label"] == label
  # A file that already is what training sees is stored as it is; others are re-encoded.
  exact = root / "dog" / "exact.jpg"
  assert image_folder.encode_image(str(exact), (8, 8), 3) == exact.read_bytes()
  assert image_folder.encode_image(str(root / "dog" / "0.png"), (8, 8), 3)[:4] == b"\x89PNG"


def test_train_and_val_folders_keep_their_splits(tmp_path):
  root = tmp_path / "imagenet"
  lib.write_images(root, classes=("a", "b", "c"), per_class=3, base="train")
  lib.write_images(root, classes=("a", "c"), per_class=2, base="val", seed=1)
  manifest = prepare(root, tmp_path / "data")
  info = manifest.dataset_info()
  assert info.split_sizes == {"train": 9, "validation": 4}
  assert info.label_names == ("a", "b", "c")
  labels = [int(e["label"]) for e in split_examples(manifest, "validation")]
  assert labels == [0, 0, 2, 2]  # val/c is class 2 of train's classes
  np.testing.assert_array_equal(
      split_examples(manifest, "validation")[2]["image"],
      image_folder.load_image(str(root / "val" / "c" / "0.png"), (8, 8), 3))
  lib.write_images(root, classes=("zebra",), per_class=1, base="val")
  with pytest.raises(UserError, match="class folder.*zebra of val/ are not in train/"):
    prepare(root, tmp_path / "data")


def test_nothing_left_is_one_error_and_a_changed_folder_is_prepared_again(tmp_path, capsys):
  root = tmp_path / "pets"
  for c in ("cat", "dog"):
    os.makedirs(root / c)
    for i in range(4):
      (root / c / f"{i}.jpg").write_bytes(b"JFIF? no")
  with pytest.raises(UserError, match="none of the .* files of the train split could be read"):
    prepare(root, tmp_path / "data")
  lib.write_images(root, per_class=8)
  first = prepare(root, tmp_path / "data", verbose=True)
  assert "preparing image folder" in capsys.readouterr().err
  assert prepare(root, tmp_path / "data", verbose=True) == first  # unchanged: nothing to do
  assert capsys.readouterr().err == ""
  lib.write_images(root, classes=("cat",), per_class=12, seed=3)
  again = prepare(root, tmp_path / "data", verbose=True)
  assert "source changed since it was prepared" in capsys.readouterr().err
  assert sum(again.dataset_info().split_sizes.values()) == 12 + 8  # the PNGs; the fakes skipped
  assert again.fingerprint != first.fingerprint


SLOW_PREPARE = """
import sys, time
from lepton_jax.data.prepare import core, image_folder

class Slow(image_folder.ImageFolder):
  def examples(self, unit):
    for example in super().examples(unit):
      time.sleep({delay})
      yield example

preparer = Slow({root!r}, image_size=(8, 8), validation_fraction=0.25, unit_size=2)
manifest = core.ensure(preparer, {data_dir!r}, {index}, {count}, workers=0, verbose=False)
print("sizes", sorted(manifest.dataset_info().split_sizes.items()))
"""


def start(root, data_dir, delay, index=0, count=1):
  code = SLOW_PREPARE.format(delay=delay, root=str(root), data_dir=str(data_dir), index=index,
                             count=count)
  env = dict(os.environ, PYTHONPATH=lib.REPO)
  return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, cwd=lib.REPO)


def unit_sidecars(directory):
  if not os.path.isdir(directory):
    return []
  return [n for n in os.listdir(directory) if n.endswith(".json") and n != records.MANIFEST]


def records_of(manifest):
  return {split: [{k: v.tobytes() for k, v in e.items()} for e in split_examples(manifest, split)]
          for split in manifest.splits}


def test_a_killed_preparation_is_never_read_and_the_rerun_completes_it(tmp_path):
  root = tmp_path / "pets"
  lib.write_images(root, per_class=8)
  proc = start(root, tmp_path / "data", delay=0.25)
  directory = core.dataset_dir(str(tmp_path / "data"), image_folder.ImageFolder(
      str(root), image_size=(8, 8), validation_fraction=0.25))
  deadline = time.time() + 120
  while not unit_sidecars(directory):
    assert time.time() < deadline and proc.poll() is None, proc.communicate()
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert records.read_manifest(directory) is None  # never looks complete
  assert 0 < len(unit_sidecars(directory)) < 8
  resumed = prepare(root, tmp_path / "data", unit_size=2)
  assert not [n for n in os.listdir(directory) if ".tmp." in n]
  fresh = prepare(root, tmp_path / "fresh", unit_size=2)
  assert records_of(resumed) == records_of(fresh)


def test_two_processes_share_one_preparation(tmp_path):
  root = tmp_path / "pets"
  lib.write_images(root, per_class=8)
  procs = [start(root, tmp_path / "data", delay=0.05, index=i, count=2) for i in range(2)]
  outputs = [p.communicate(timeout=180) for p in procs]
  for p, (out, err) in zip(procs, outputs):
    assert p.returncode == 0, err
  assert outputs[0][0] == outputs[1][0] and "sizes" in outputs[0][0]
  shared = records.read_manifest(core.dataset_dir(str(tmp_path / "data"), image_folder.ImageFolder(
      str(root), image_size=(8, 8), validation_fraction=0.25)))
  assert records_of(shared) == records_of(prepare(root, tmp_path / "fresh", unit_size=2))
