"""A folder of images, one sub-folder per class, prepared into records.

    config.data.manual_dir = "/data/flowers"   # flowers/daisy/*.jpg, flowers/rose/*.png, ...
    config.data.image_size = (224, 224)        # (height, width) every image is resized to
    config.data.channels = 3                   # 1: grayscale, 3: RGB
    config.data.validation_fraction = 0.2      # share of the images held out for 'validation'
    config.data.jpeg_quality = 0               # 0: store resized images losslessly (PNG)

Two layouts. A folder of class folders is split by a hash of each image's path (an image is in
`validation` when the hash falls below validation_fraction: stable when files come and go). A
folder holding `train/` and `val/` (or `validation/`, and optionally `test/`), each of class
folders (ImageNet style), keeps those splits (`val` is named `validation`); the classes are
train's.

The classes are the class folders sorted by name; their PNG, JPEG, BMP and GIF files (by
extension, searched recursively) are decoded with Pillow, converted to `channels` and resized
bilinearly to `image_size` (aspect ratio not kept), exactly as `load_image` does. A file that
already is a PNG or JPEG of that size and mode is stored as it is; others are stored as PNG
(lossless) or, with jpeg_quality > 0, as JPEG of that quality (a fraction of the size for
photos). Files that cannot be decoded (corrupt, empty, not images, or larger than Pillow's
Image.MAX_IMAGE_PIXELS: decompression bombs) are skipped with a warning naming them.

The listing (paths, sizes, modification times) is the fingerprint: when files are added,
removed or changed, the next use prepares the dataset again.
"""

import dataclasses
import hashlib
import io
import os
import re
import sys
import warnings

import numpy as np

from lepton_jax.data import records
from lepton_jax.data.info import DatasetInfo
from lepton_jax.data.prepare import core
from lepton_jax.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
SPLIT_FOLDERS = {"train": "train", "val": "validation", "validation": "validation",
                 "test": "test"}
_STORED_AS_IS = ("PNG", "JPEG")


def _hash_fraction(relative_path: str) -> float:
  """A number in [0, 1) fixed by the path alone (the split key)."""
  digest = hashlib.sha256(relative_path.encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") / 2.0**64


def fraction_tag(fraction: float) -> str:
  """0.2 -> '0p2', 1e-05 -> '1em05': the exact fraction, in a folder name."""
  return repr(float(fraction)).replace(".", "p").replace("-", "m").replace("+", "")


@dataclasses.dataclass(frozen=True)
class Listing:
  """The classes and image files of a folder, by split."""

  root: str
  classes: tuple
  files: dict  # split -> tuple of (path relative to root, label), sorted
  ignored: int  # files without an image extension
  fingerprint: str


def _class_files(root: str, base: str, classes: tuple, hasher) -> tuple[list, int]:
  """(relative path, label) of the images under root/base/<class>/, and the ignored count."""
  files, ignored = [], 0
  for label, name in enumerate(classes):
    top = os.path.join(root, base, name)
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
      dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
      for filename in sorted(f for f in filenames if not f.startswith(".")):
        if os.path.splitext(filename)[1].lower() not in IMAGE_EXTENSIONS:
          ignored += 1
          continue
        path = os.path.join(dirpath, filename)
        rel = os.path.relpath(path, root).replace(os.sep, "/")
        st = os.stat(path)
        hasher.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        files.append((rel, label))
  return sorted(files), ignored


def _subfolders(path: str) -> list[str]:
  return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def _split_folders(root: str) -> dict[str, str]:
  """{split: folder} for the ImageNet-style layout, {} for a folder of class folders."""
  folders = _subfolders(root)
  found = {SPLIT_FOLDERS[f]: f for f in folders if f in SPLIT_FOLDERS}
  return found if "train" in found and len(found) > 1 else {}


def list_images(root: str, validation_fraction: float) -> Listing:
  """Scans `root` (either layout, see the module doc)."""
  if not os.path.isdir(root):
    raise UserError(f"data.manual_dir {root!r} is not a directory; point it at a folder with one "
                    "sub-folder of images per class")
  hasher = hashlib.sha256()
  split_folders = _split_folders(root)
  class_root = os.path.join(root, split_folders.get("train", ""))
  classes = tuple(_subfolders(class_root))
  if not classes:
    raise UserError(f"image folder {class_root} has no class sub-folders; put the images of each "
                    "class in their own sub-folder (e.g. cats/*.jpg, dogs/*.jpg)")
  if split_folders:
    files, ignored = {}, 0
    for split, folder in split_folders.items():
      extra = sorted(set(_subfolders(os.path.join(root, folder))) - set(classes))
      if extra:
        raise UserError(f"image folder {root}: class folder(s) {', '.join(extra[:5])} of "
                        f"{folder}/ are not in train/; every split needs the train classes only")
      files[split], n = _class_files(root, folder, classes, hasher)
      ignored += n
  else:
    every, ignored = _class_files(root, "", classes, hasher)
    files = {"train": [], "validation": []}
    for rel, label in every:
      split = "validation" if _hash_fraction(rel) < validation_fraction else "train"
      files[split].append((rel, label))
  _check_classes(root, classes, files)
  return Listing(root, classes, {s: tuple(f) for s, f in files.items()}, ignored,
                 hasher.hexdigest())


def _check_classes(root: str, classes: tuple, files: dict) -> None:
  every = [label for split_files in files.values() for _, label in split_files]
  if not every:
    raise UserError(f"image folder {root} has no image files ({', '.join(IMAGE_EXTENSIONS)}) in "
                    f"its class sub-folders {', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''}")
  counts = np.bincount(every, minlength=len(classes))
  with_images = [c for c, n in zip(classes, counts) if n]
  if len(with_images) < 2:
    raise UserError(f"image folder {root} has images of a single class ({with_images[0]!r}); "
                    "classification needs at least two class sub-folders with images")
  for split, split_files in files.items():
    if not split_files:
      raise UserError(f"image folder {root}: the {split} split would be empty ({len(every)} "
                      "images); add images or change data.validation_fraction")
  empty = [c for c, n in zip(classes, counts) if not n]
  if empty:
    print(f"warning: image folder {root}: class folder(s) {', '.join(empty)} hold no images "
          "(their labels will never occur)", file=sys.stderr)


def load_image(path_or_file, image_size: tuple, channels: int) -> np.ndarray:
  """One image as uint8 (height, width, channels), converted and resized bilinearly.

  What training sees of an image file; predict should read new images with it too.
  """
  from PIL import Image
  with Image.open(path_or_file) as im:
    return _pixels(im, image_size, channels)


def _pixels(im, image_size: tuple, channels: int) -> np.ndarray:
  from PIL import Image
  im.seek(0)  # the first frame of animated GIFs
  im = im.convert("L" if channels == 1 else "RGB")
  height, width = image_size
  if im.size != (width, height):
    im = im.resize((width, height), Image.BILINEAR)
  array = np.asarray(im, dtype=np.uint8)
  return array[..., None] if channels == 1 else array


def encode_image(path: str, image_size: tuple, channels: int, jpeg_quality: int = 0) -> bytes:
  """The stored form of an image file: its own bytes when they already decode to the training
  pixels, else the pixels as PNG (or JPEG). Raises ValueError for files that are not images."""
  from PIL import Image, UnidentifiedImageError
  with open(path, "rb") as f:
    data = f.read()
  if not data:
    raise ValueError("empty file")
  try:
    with warnings.catch_warnings():
      # Above MAX_IMAGE_PIXELS Pillow only warns (twice that: raises): both mean "skip it".
      warnings.simplefilter("error", Image.DecompressionBombWarning)
      with Image.open(io.BytesIO(data)) as im:
        height, width = image_size
        mode = "L" if channels == 1 else "RGB"
        if (im.format in _STORED_AS_IS and im.mode == mode and im.size == (width, height)
            and getattr(im, "n_frames", 1) == 1):
          im.load()  # decodes every pixel: a truncated file fails here, not in training
          return data
        pixels = _pixels(im, image_size, channels)
  except UnidentifiedImageError as e:
    raise ValueError("not an image Pillow can read") from e
  except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError,
          Image.DecompressionBombWarning) as e:
    raise ValueError(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
  out = io.BytesIO()
  image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
  if jpeg_quality:
    image.save(out, "JPEG", quality=int(jpeg_quality))
  else:
    image.save(out, "PNG", compress_level=1)  # fast to write; PNG decodes at the same speed
  return out.getvalue()


def _unit_size(total: int) -> int:
  """Files per unit, fixed by the file count: ~64 units for small folders (progress, resume,
  parallel helpers), at most 4,096 files for big ones (few open files per reader)."""
  return min(4096, max(256, -(-total // 64)))


class ImageFolder(core.Preparer):
  """Images of class sub-folders (see the module doc)."""

  name = "image_folder"
  noun = "files"
  parallel = True

  def __init__(self, root: str, image_size=(224, 224), channels: int = 3,
               validation_fraction: float = 0.2, jpeg_quality: int = 0, unit_size: int = 0):
    size = tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
      raise UserError(f"data.image_size must be (height, width) of positive integers, got {size!r}")
    if channels not in (1, 3):
      raise UserError(f"data.channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    if not 0.0 < float(validation_fraction) < 1.0:
      raise UserError(f"data.validation_fraction must be between 0 and 1 (exclusive), got "
                      f"{validation_fraction}")
    if not 0 <= int(jpeg_quality) <= 100:
      raise UserError(f"data.jpeg_quality must be 0 (lossless PNG) or 1-100, got {jpeg_quality}")
    self.root = os.path.abspath(os.path.expanduser(str(root)))
    if not os.path.isdir(self.root):
      raise UserError(f"data.manual_dir {str(root)!r} is not a directory; point it at a folder "
                      "with one sub-folder of images per class")
    self.image_size, self.channels = size, int(channels)
    self.validation_fraction = float(validation_fraction)
    self.jpeg_quality, self.unit_size = int(jpeg_quality), int(unit_size)
    self._listing = None

  @classmethod
  def from_config(cls, data_config) -> "ImageFolder":
    manual_dir = str(data_config.get("manual_dir") or "")
    if not manual_dir:
      raise UserError("data.name='image_folder' needs data.manual_dir: a folder with one "
                      "sub-folder of images per class")
    return cls(manual_dir, data_config.get("image_size", (224, 224)),
               data_config.get("channels", 3), data_config.get("validation_fraction", 0.2),
               data_config.get("jpeg_quality", 0))

  def __getstate__(self):
    return {**self.__dict__, "_listing": None}  # helpers get their files in the units

  def listing(self) -> Listing:
    if self._listing is None:
      self._listing = list_images(self.root, self.validation_fraction)
    return self._listing

  def slug(self) -> str:
    base = re.sub(r"[^a-z0-9]+", "_", os.path.basename(self.root.rstrip("/")).lower()).strip("_")
    path_hash = hashlib.sha256(self.root.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    h, w = self.image_size
    split = "splits" if _split_folders(self.root) else f"val{fraction_tag(self.validation_fraction)}"
    quality = f"_q{self.jpeg_quality}" if self.jpeg_quality else ""
    return f"{base[:40] or 'root'}_{path_hash}_{h}x{w}x{self.channels}_{split}{quality}"

  def fingerprint(self) -> str:
    return f"{records.FORMAT}|{self.slug()}|{self.listing().fingerprint}"

  def describe(self) -> str:
    listing = self.listing()
    return (f"image folder {self.root} ({sum(len(f) for f in listing.files.values()):,} images, "
            f"{len(listing.classes)} classes)")

  def plan(self) -> list[core.Unit]:
    listing = self.listing()
    if listing.ignored:
      print(f"note: image folder {self.root}: ignored {listing.ignored} file(s) without an image "
            f"extension ({', '.join(IMAGE_EXTENSIONS)})", file=sys.stderr)
    total = sum(len(f) for f in listing.files.values())
    size = self.unit_size or _unit_size(total)
    return core.number_units([(split, chunk) for split, files in listing.files.items()
                              for chunk in core.chunked(files, size)])

  def features(self) -> dict[str, records.Feature]:
    return {"image": records.image_feature(*self.image_size, self.channels),
            "label": records.array_feature(np.int32)}

  def examples(self, unit: core.Unit):
    for rel, label in unit.items:
      try:
        data = encode_image(os.path.join(self.root, rel), self.image_size, self.channels,
                            self.jpeg_quality)
      except (OSError, ValueError) as e:
        yield core.Skipped(rel, str(e) or type(e).__name__)
        continue
      yield {"image": data, "label": label}

  def info(self) -> DatasetInfo:
    h, w = self.image_size
    kind = "grayscale" if self.channels == 1 else "RGB"
    return DatasetInfo(
        name="image_folder", input_key="image", input_shape=(h, w, self.channels),
        input_dtype=np.uint8, num_classes=len(self.listing().classes),
        label_names=self.listing().classes, split_sizes={},
        input_description=(f"{h}x{w}x{self.channels} uint8 {kind}, 0-255: image files decoded "
                           f"with Pillow, converted to {kind}, resized bilinearly to {h}x{w} "
                           "(lepton_jax.data.prepare.image_folder.load_image)"))
