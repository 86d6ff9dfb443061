"""The built-in datasets: each a registered name whose config.data keys choose a preparer
(prepare/) or a tfds catalog dataset.

    digits, breast_cancer    scikit-learn's bundled sets (no download)
    mnist, cifar10           the original files in data.manual_dir; without it, tfds downloads
                             them (needs the tfds extra: pip install 'lepton-jax[tfds]')
    image_folder             a folder of class folders (data.manual_dir)
    text_files               language-model windows of text files (data.files or manual_dir)
    tfds                     any tfds catalog dataset (data.tfds_name), read without tf.data

All but tfds are prepared once into records under data.data_dir on first use (one line says
what and where, then a progress line), with neither TensorFlow nor tensorflow-datasets.
"""

import os

from lepton_jax import registry
from lepton_jax.data import base, sources, tokenizers
from lepton_jax.data.info import DatasetInfo
from lepton_jax.data.prepare import cifar10, image_folder, mnist, sklearn_sets, tfds_catalog
from lepton_jax.data.prepare import text_files
from lepton_jax.errors import UserError


class TfdsCatalog(base.Dataset):
  """A tfds catalog dataset, prepared by tfds in its ArrayRecord format and read by index
  through tfds.data_source (no tf.data; TensorFlow must be installed for tfds to import)."""

  defaults = {"tfds_name": "",  # the tfds catalog name, e.g. 'cifar100' or 'mnist:3.0.1'
              "input_key": "",  # the input feature; '': 'image' if there is one
              "label_key": "label"}  # the class label feature

  def __init__(self, data_config, recorded: DatasetInfo | None = None, name: str = ""):
    super().__init__(data_config, recorded)
    self.name = name or str(self.config.get("tfds_name") or "")
    if not self.name:
      raise UserError("data.name='tfds' needs data.tfds_name, a tfds catalog name such as "
                      "'cifar100' (https://www.tensorflow.org/datasets/catalog)")

  def builder(self):
    if "_builder" not in self.__dict__:
      self._builder = tfds_catalog.prepare(self.name, base.data_dir(self.config))
    return self._builder

  def info(self) -> DatasetInfo:
    if self.recorded is not None:
      return self.recorded
    return tfds_catalog.info(self.builder(), self.config.get("input_key", ""),
                             self.config.get("label_key", "label"))

  def source(self, split: str):
    self.builder()  # prepared
    return sources.TfdsSource(self.name, split, base.data_dir(self.config))

  def cache_dir(self) -> str | None:
    return str(self.builder().data_dir)


registry.register("dataset", "tfds")(TfdsCatalog)


class _OfflineOrCatalog(base.RecordDataset):
  """Prepared from the original files in data.manual_dir; without them, tfds' catalog copy."""

  catalog_name = ""

  def __init__(self, data_config, recorded: DatasetInfo | None = None):
    super().__init__(data_config, recorded)
    self.catalog = None
    if not self.config.get("manual_dir"):
      self.catalog = TfdsCatalog(base.with_defaults(
          {"name": "tfds", "data_dir": self.config.data_dir}, TfdsCatalog.defaults, "tfds"),
          recorded, name=self.catalog_name)

  def info(self) -> DatasetInfo:
    return self.catalog.info() if self.catalog else super().info()

  def source(self, split: str):
    return self.catalog.source(split) if self.catalog else super().source(split)

  def cache_dir(self) -> str | None:
    return self.catalog.cache_dir() if self.catalog else super().cache_dir()


@registry.register("dataset", "mnist")
class Mnist(_OfflineOrCatalog):
  """MNIST 60,000 train / 10,000 test 28x28 digits (the IDX files in data.manual_dir)."""

  defaults = {"verify_checksums": True}  # the original files' checksums (off for re-packed copies)
  catalog_name = "mnist"

  def preparer(self):
    return mnist.Mnist.from_config(self.config)


@registry.register("dataset", "cifar10")
class Cifar10(_OfflineOrCatalog):
  """CIFAR-10 50,000 train / 10,000 test 32x32 colour images (the python-version archive in
  data.manual_dir)."""

  defaults = {"verify_checksums": True}  # the original files' checksums (off for re-packed copies)
  catalog_name = "cifar10"

  def preparer(self):
    return cifar10.Cifar10.from_config(self.config)


@registry.register("dataset", "digits")
class Digits(base.RecordDataset):
  """scikit-learn digits: 1,150 train / 287 validation / 360 test 8x8 grayscale images."""

  def preparer(self):
    return sklearn_sets.Digits()


@registry.register("dataset", "breast_cancer")
class BreastCancer(base.RecordDataset):
  """scikit-learn breast cancer: 455 train / 114 test, 30 features, binary, standardized."""

  def preparer(self):
    return sklearn_sets.BreastCancer()

  def host_transform(self, arrays):
    # Standardized with the training split's statistics, recorded with the prepared data (and
    # in run.json): predict does to new inputs what reading did to the examples.
    transform = self.info().transform
    return sources.standardize(arrays, transform["args"]) if transform else arrays


@registry.register("dataset", "image_folder")
class ImageFolder(base.RecordDataset):
  """A class-per-sub-folder image directory (data.manual_dir), resized to data.image_size."""

  defaults = {"image_size": (224, 224), "channels": 3, "validation_fraction": 0.2,
              "jpeg_quality": 0}  # 0: store resized images as PNG (lossless); 1-100: JPEG

  def preparer(self):
    return image_folder.ImageFolder.from_config(self.config)


@registry.register("dataset", "text_files")
class TextFiles(base.RecordDataset):
  """Language-model windows of local text files (data.files glob or data.manual_dir)."""

  defaults = {"files": "", "seq_len": 256, "stride": 0, "validation_fraction": 0.05,
              "tokenizer": "bytes", "tokenizer_path": "", "vocab_size": 0,
              "tokenizer_model_type": "bpe", "tokenizer_pattern": ""}

  def preparer(self):
    paths = text_files.find_files(self.config)
    c = self.config
    text = text_files.Text([os.path.abspath(p) for p in paths], float(c.validation_fraction))
    # A SentencePiece model is trained (when data.vocab_size asks for one and the file is not
    # there yet) on the train split only: validation text must stay unseen.
    tokenizer = tokenizers.build_tokenizer(
        str(c.tokenizer), str(c.tokenizer_path), pattern=str(c.tokenizer_pattern),
        vocab_size=int(c.vocab_size), model_type=str(c.tokenizer_model_type),
        texts=_lazily(text.train_text))
    return text_files.TextFiles(paths, c.seq_len, c.stride, c.validation_fraction, tokenizer,
                                text)

  @property
  def tokenizer(self) -> tokenizers.Tokenizer:
    """The tokenizer of the data (from run.json's record in predict): text <-> token ids."""
    spec = self.info().tokenizer
    return tokenizers.from_spec(spec) if spec else tokenizers.BytesTokenizer()


def _lazily(make_text):
  """An iterable of the one text `make_text()` gives, made only if iterated: decoding the
  train split costs time that only training a tokenizer needs."""
  yield make_text()


def checked_tokenizer(info: DatasetInfo, recorded: dict | None, what: str) -> None:
  """Refuses data whose tokenizer is not the `recorded` one (a spec), e.g. on a resume."""
  if recorded and info.tokenizer and (
      tokenizers.spec_fingerprint(recorded) != tokenizers.spec_fingerprint(info.tokenizer)):
    tokenizers.check_same(tokenizers.from_spec(info.tokenizer), recorded, what)
