"""A folder of images, one sub-folder per class, as a tfds dataset.

    config.data.name = "image_folder"
    config.data.manual_dir = "/data/flowers"      # flowers/daisy/*.jpg, flowers/rose/*.png, ...
    config.data.image_size = (224, 224)           # (height, width) every image is resized to
    config.data.channels = 3                      # 1: grayscale, 3: RGB
    config.data.validation_fraction = 0.2         # share of the images held out for 'validation'

What Keras' `image_dataset_from_directory` does, through tfds: the classes are
the sub-folders of manual_dir (sorted by name: label i is the i-th folder),
their PNG, JPEG, BMP and GIF files (by extension, case-insensitive, searched
recursively; anything else is ignored) are decoded with Pillow, converted to
`channels`, resized to `image_size` with bilinear interpolation (aspect ratio
not kept; images of mixed sizes are fine) and written once as a tfds dataset
with splits `train` and `validation`.

The split is deterministic and stable: an image is in `validation` when a hash
of its path relative to manual_dir falls below `validation_fraction`, so adding
or removing files never moves the others between splits.

The prepared dataset lives under data.data_dir in `image_folder/<config>/1.0.0`,
where <config> is made of the folder's name, a hash of its absolute path, the
image size, the channels and the validation fraction: different folders and
settings never collide. The folder's listing (paths, sizes, modification times)
is recorded there; when it changes, the dataset is rebuilt on the next run
(with a warning).

Bad input: no class folders, a single class, no images, or an empty split are
one-line errors. Files that cannot be decoded (corrupt, truncated, not really
images) are skipped: the build prints `warning: skipped N unreadable image
file(s) ...` with the first few paths, and fails only if nothing is left.
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import sys

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from lepton_jax import registry
from lepton_jax.data import base, tfds_source
from lepton_jax.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
LISTING_FILE = "lepton_listing.json"


def _hash_fraction(relative_path: str) -> float:
  """A number in [0, 1) fixed by the path alone (the split key)."""
  digest = hashlib.sha256(relative_path.encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") / 2.0**64


def fraction_tag(fraction: float) -> str:
  """0.2 -> '0p2', 1e-05 -> '1em05': the exact fraction, in a builder-config name."""
  return repr(float(fraction)).replace(".", "p").replace("-", "m").replace("+", "")


def split_of(relative_path: str, validation_fraction: float) -> str:
  return "validation" if _hash_fraction(relative_path) < validation_fraction else "train"


@dataclasses.dataclass(frozen=True)
class Listing:
  """The class folders and image files of a directory."""

  root: str
  classes: tuple  # class names, sorted
  files: tuple  # (relative path, label index), sorted by path
  ignored: int  # files without an image extension

  def fingerprint(self) -> str:
    h = hashlib.sha256()
    for rel, _ in self.files:
      st = os.stat(os.path.join(self.root, rel))
      h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def list_images(root: str) -> Listing:
  """Scans `root`: one sub-folder per class, image files anywhere below them."""
  if not os.path.isdir(root):
    raise UserError(f"data.manual_dir {root!r} is not a directory; point it at a folder with one "
                    "sub-folder of images per class")
  classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
  if not classes:
    raise UserError(f"image folder {root} has no class sub-folders; put the images of each class "
                    "in their own sub-folder (e.g. cats/*.jpg, dogs/*.jpg)")
  files, ignored = [], 0
  for label, name in enumerate(classes):
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, name), followlinks=True):
      dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
      for filename in sorted(filenames):
        if filename.startswith("."):
          continue
        if os.path.splitext(filename)[1].lower() in IMAGE_EXTENSIONS:
          rel = os.path.relpath(os.path.join(dirpath, filename), root).replace(os.sep, "/")
          files.append((rel, label))
        else:
          ignored += 1
  if not files:
    raise UserError(f"image folder {root} has no image files ({', '.join(IMAGE_EXTENSIONS)}) in "
                    f"its class sub-folders {', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''}")
  counts = np.bincount([label for _, label in files], minlength=len(classes))
  with_images = [c for c, n in zip(classes, counts) if n]
  if len(with_images) < 2:
    raise UserError(f"image folder {root} has images of a single class ({with_images[0]!r}); "
                    "classification needs at least two class sub-folders with images")
  empty = [c for c, n in zip(classes, counts) if not n]
  if empty:
    print(f"warning: image folder {root}: class folder(s) {', '.join(empty)} hold no images "
          "(their labels will never occur)", file=sys.stderr)
  return Listing(root, tuple(classes), tuple(sorted(files)), ignored)


def load_image(path: str, image_size: tuple, channels: int) -> np.ndarray:
  """One image file as uint8 (height, width, channels), resized bilinearly.

  Raises OSError/ValueError (Pillow's errors) for files it cannot decode. Predict
  should read new images with this function, so they match training.
  """
  from PIL import Image
  with Image.open(path) as im:
    im.seek(0)  # first frame of animated GIFs
    im = im.convert("L" if channels == 1 else "RGB")
    height, width = image_size
    if im.size != (width, height):
      im = im.resize((width, height), Image.BILINEAR)
    array = np.asarray(im, dtype=np.uint8)
  return array[..., None] if channels == 1 else array


def _check_settings(data_config) -> tuple[tuple, int, float]:
  size = tuple(data_config.image_size)
  if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
    raise UserError(f"data.image_size must be (height, width) of positive integers, got {size!r}")
  channels = data_config.channels
  if channels not in (1, 3):
    raise UserError(f"data.channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
  fraction = float(data_config.validation_fraction)
  if not 0.0 < fraction < 1.0:
    raise UserError(f"data.validation_fraction must be between 0 and 1 (exclusive), got {fraction}")
  return size, int(channels), fraction


@dataclasses.dataclass(eq=False)
class ImageFolderConfig(tfds.core.BuilderConfig):
  root: str = ""
  image_size: tuple = (224, 224)
  channels: int = 3
  validation_fraction: float = 0.2
  classes: tuple = ()


def builder_config(root: str, image_size: tuple, channels: int, fraction: float,
                   classes: tuple) -> ImageFolderConfig:
  root = os.path.abspath(root)
  slug = re.sub(r"[^a-z0-9]+", "_", os.path.basename(root.rstrip("/")).lower()).strip("_")[:40]
  path_hash = hashlib.sha256(root.encode("utf-8", "surrogateescape")).hexdigest()[:10]
  name = (f"{slug or 'root'}_{path_hash}_{image_size[0]}x{image_size[1]}x{channels}"
          f"_val{fraction_tag(fraction)}")
  return ImageFolderConfig(name=name, version=tfds.core.Version("1.0.0"),
                           description=f"images of {root}", root=root, image_size=image_size,
                           channels=channels, validation_fraction=fraction, classes=classes)


class ImageFolderBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Images of a class-per-folder directory, resized, with a hashed train/validation split."""

  name = "image_folder"
  VERSION = tfds.core.Version("1.0.0")
  listing: Listing | None = None  # set before preparing

  def _info(self):
    cfg = self.builder_config
    return self.dataset_info_from_configs(
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=tuple(cfg.image_size) + (cfg.channels,)),
            "label": tfds.features.ClassLabel(names=list(cfg.classes)),
        }),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    cfg = self.builder_config
    by_split = {"train": [], "validation": []}
    for rel, label in self.listing.files:
      by_split[split_of(rel, cfg.validation_fraction)].append((rel, label))
    for split, files in by_split.items():
      if not files:
        raise UserError(f"image folder {cfg.root}: the {split} split would be empty "
                        f"({len(self.listing.files)} images, validation_fraction="
                        f"{cfg.validation_fraction}); add images or change data.validation_fraction")
    return {split: self._generate_examples(split, files) for split, files in by_split.items()}

  def _generate_examples(self, split, files):
    cfg = self.builder_config
    bad = []
    for rel, label in files:
      try:
        image = load_image(os.path.join(cfg.root, rel), cfg.image_size, cfg.channels)
      except (OSError, ValueError, SyntaxError) as e:  # Pillow's decode errors
        bad.append(f"{rel} ({type(e).__name__})")
        continue
      yield rel, {"image": image, "label": label}
    if bad:
      print(f"warning: image folder {cfg.root}: skipped {len(bad)} unreadable image file(s) of "
            f"the {split} split: {', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}",
            file=sys.stderr)
    if len(bad) == len(files):
      raise UserError(f"image folder {cfg.root}: none of the {len(files)} image files of the "
                      f"{split} split could be decoded; are they really images?")


@contextlib.contextmanager
def quiet_absl():
  """Silences tfds' absl warnings about custom configs and not-yet-prepared folders."""
  from absl import logging
  level = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    yield
  finally:
    logging.set_verbosity(level)


@registry.register("dataset", "image_folder")
class ImageFolder(base.Dataset):
  """A class-per-sub-folder image directory (data.manual_dir), resized to data.image_size."""

  defaults = {"image_size": (224, 224), "channels": 3, "validation_fraction": 0.2}

  def builder(self):
    manual_dir = str(self.config.get("manual_dir") or "")
    if not manual_dir:
      raise UserError("data.name='image_folder' needs data.manual_dir: a folder with one "
                      "sub-folder of images per class")
    root = os.path.abspath(os.path.expanduser(manual_dir))
    size, channels, fraction = _check_settings(self.config)
    listing = list_images(root)
    config = builder_config(root, size, channels, fraction, listing.classes)
    with quiet_absl():
      builder = ImageFolderBuilder(config=config, data_dir=tfds_source.data_dir(self.config))
      prepared = builder.is_prepared()
    fingerprint = listing.fingerprint()
    record = {"fingerprint": fingerprint, "classes": list(listing.classes),
              "files": len(listing.files)}
    listing_path = epath.Path(str(builder.data_dir)) / LISTING_FILE
    if prepared:
      try:
        stored = json.loads(listing_path.read_text())
      except (OSError, ValueError):
        stored = {}
      if stored.get("fingerprint") != fingerprint:
        print(f"warning: image folder {root} changed since it was prepared "
              f"({stored.get('files', '?')} images then, {len(listing.files)} now); rebuilding "
              f"{builder.data_dir}", file=sys.stderr)
        epath.Path(str(builder.data_dir)).rmtree()
        with quiet_absl():
          builder = ImageFolderBuilder(config=config, data_dir=tfds_source.data_dir(self.config))
        prepared = False
    if not prepared:
      if listing.ignored:
        print(f"note: image folder {root}: ignored {listing.ignored} file(s) without an image "
              f"extension ({', '.join(IMAGE_EXTENSIONS)})", file=sys.stderr)
      builder.listing = listing
      tfds_source.prepare(builder)
      listing_path.write_text(json.dumps(record))
    return builder

  def info(self):
    cfg = self.builder().builder_config
    h, w = cfg.image_size
    kind = "grayscale" if cfg.channels == 1 else "RGB"
    info = base.image_info(
        "image_folder", self.builder(),
        f"{h}x{w}x{cfg.channels} uint8 {kind}, 0-255: image files decoded with Pillow, converted "
        f"to {kind}, resized bilinearly to {h}x{w} (lepton_jax.data.image_folder.load_image)")
    return info
