"""Local text files as a byte-level language-modelling dataset, through tfds.

    config.data.name = "text_files"
    config.data.files = "~/corpus/*.txt"      # a glob (`**` recurses; {stdlib}: Python's); or:
    config.data.manual_dir = "~/corpus"        # every non-hidden file below it
    config.data.seq_len = 256                  # tokens per example (T)
    config.data.stride = 0                     # window start every N bytes; 0: seq_len
    config.data.validation_fraction = 0.05     # the last 5% of the bytes

Tokens are bytes (0-255): any file works, UTF-8 text being the usual case, and
nothing is ever out of vocabulary. The files are concatenated in sorted path
order; the first (1 - validation_fraction) of the bytes make the `train` split,
the rest `validation` (a split by position: no window straddles the two).
Each example is a window of seq_len + 1 consecutive bytes, starting every
`stride` bytes; the model reads `tokens` = window[:-1] and is scored on
`targets` = window[1:] (both int32, shape (seq_len,)). With the default stride
every byte but the first of a split is a target exactly once per epoch.

The windows are written once as a tfds dataset under data.data_dir, in
`text_files/<config>/1.0.0`, <config> naming a hash of the files' content, the
window length, the stride and the validation fraction: changing the text or a
setting builds a new one, and a dataset is never read for the wrong text.
"""

import dataclasses
import glob
import hashlib
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from lepton_jax import registry
from lepton_jax.data import base, tfds_source
from lepton_jax.data.image_folder import fraction_tag, quiet_absl
from lepton_jax.errors import UserError
from lepton_jax.data.info import DatasetInfo

VOCAB_SIZE = 256


STDLIB = "{stdlib}"  # in data.files: the running Python's standard library folder


def expand(pattern: str) -> str:
  """~ and {stdlib} (sysconfig's 'stdlib' path: text that every machine has) expanded."""
  if STDLIB in pattern:
    import sysconfig
    pattern = pattern.replace(STDLIB, sysconfig.get_paths()["stdlib"])
  return os.path.expanduser(pattern)


def find_files(data_config) -> list[str]:
  """The text files of data.files (a glob) or data.manual_dir, sorted."""
  pattern = str(data_config.files or "")
  manual_dir = str(data_config.get("manual_dir") or "")
  if pattern:
    pattern = expand(pattern)
    paths = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    if not paths:
      raise UserError(f"data.files={pattern!r} matches no files; give a glob of text files, "
                      "e.g. '~/corpus/*.txt' ('**' matches sub-folders)")
    return paths
  if manual_dir:
    root = os.path.expanduser(manual_dir)
    if not os.path.isdir(root):
      raise UserError(f"data.manual_dir {root!r} is not a directory of text files")
    paths = []
    for dirpath, dirnames, filenames in os.walk(root):
      dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
      paths += [os.path.join(dirpath, f) for f in sorted(filenames) if not f.startswith(".")]
    if not paths:
      raise UserError(f"data.manual_dir {root!r} holds no files")
    return sorted(paths)
  raise UserError("data.name='text_files' needs data.files (a glob of text files) or "
                  "data.manual_dir (a folder of them)")


def read_bytes(paths: list[str]) -> bytes:
  parts = []
  for path in paths:
    try:
      with open(path, "rb") as f:
        parts.append(f.read())
    except OSError as e:
      raise UserError(f"cannot read text file {path}: {e.strerror or e}") from e
  return b"".join(parts)


def windows(data: np.ndarray, length: int, stride: int) -> np.ndarray:
  """(N, length) windows of `data` starting every `stride` elements (a view)."""
  n = (len(data) - length) // stride + 1 if len(data) >= length else 0
  return np.lib.stride_tricks.as_strided(data, (n, length), (stride * data.strides[0], data.strides[0]),
                                         writeable=False)


def _settings(data_config) -> tuple[int, int, float]:
  seq_len = data_config.seq_len
  if not isinstance(seq_len, int) or seq_len < 1:
    raise UserError(f"data.seq_len must be a positive integer, got {seq_len!r}")
  stride = data_config.stride or seq_len
  if not isinstance(stride, int) or stride < 1:
    raise UserError(f"data.stride must be a positive integer (0: seq_len), got {stride!r}")
  fraction = float(data_config.validation_fraction)
  if not 0.0 < fraction < 1.0:
    raise UserError(f"data.validation_fraction must be between 0 and 1 (exclusive), got {fraction}")
  return seq_len, stride, fraction


def split_bytes(data: bytes, seq_len: int, fraction: float, source: str) -> dict[str, np.ndarray]:
  """The train and validation parts of the bytes, each long enough for one window."""
  array = np.frombuffer(data, np.uint8)
  window = seq_len + 1
  if len(array) < window:
    raise UserError(f"{source} holds {len(array):,} bytes, fewer than one window of data.seq_len + 1 "
                    f"= {window}; give more text or lower data.seq_len")
  cut = int(round(len(array) * (1.0 - fraction)))
  parts = {"train": array[:cut], "validation": array[cut:]}
  for split, part in parts.items():
    if len(part) < window:
      raise UserError(f"{source}: the {split} split gets {len(part):,} bytes (validation_fraction="
                      f"{fraction}), fewer than one window of {window}; give more text, lower "
                      "data.seq_len or change data.validation_fraction")
  return parts


@dataclasses.dataclass(eq=False)
class TextFilesConfig(tfds.core.BuilderConfig):
  paths: tuple = ()
  seq_len: int = 256
  stride: int = 256
  validation_fraction: float = 0.05


class TextFilesBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Byte windows of local text files: train = the leading bytes, validation = the tail."""

  name = "text_files"
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    cfg = self.builder_config
    return self.dataset_info_from_configs(
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "window": tfds.features.Tensor(shape=(cfg.seq_len + 1,), dtype=np.uint8),
        }),
    )

  def _split_generators(self, dl_manager):
    cfg = self.builder_config
    parts = split_bytes(read_bytes(list(cfg.paths)), cfg.seq_len, cfg.validation_fraction,
                        f"the {len(cfg.paths)} text file(s)")
    return {split: self._generate_examples(part) for split, part in parts.items()}

  def _generate_examples(self, part):
    cfg = self.builder_config
    for index, window in enumerate(windows(part, cfg.seq_len + 1, cfg.stride)):
      yield index, {"window": np.array(window)}


@registry.register("dataset", "text_files")
class TextFiles(base.Dataset):
  """Byte-level LM windows of local text files (data.files glob or data.manual_dir)."""

  defaults = {"files": "", "seq_len": 256, "stride": 0, "validation_fraction": 0.05}

  def builder(self):
    seq_len, stride, fraction = _settings(self.config)
    paths = find_files(self.config)
    data = read_bytes(paths)
    split_bytes(data, seq_len, fraction, f"{len(paths)} text file(s) ({paths[0]}, ...)"
                if len(paths) > 1 else paths[0])  # a clear error before tfds starts
    digest = hashlib.sha256(data).hexdigest()[:12]
    slug = re.sub(r"[^a-z0-9]+", "_", os.path.basename(paths[0]).lower()).strip("_")[:30]
    name = f"{slug or 'text'}_{digest}_t{seq_len}_s{stride}_val{fraction_tag(fraction)}"
    config = TextFilesConfig(name=name, version=tfds.core.Version("1.0.0"),
                             description=f"{len(paths)} file(s), {len(data):,} bytes",
                             paths=tuple(os.path.abspath(p) for p in paths), seq_len=seq_len,
                             stride=stride, validation_fraction=fraction)
    with quiet_absl():
      builder = TextFilesBuilder(config=config, data_dir=tfds_source.data_dir(self.config))
      prepared = builder.is_prepared()
    if not prepared:
      tfds_source.prepare(builder)
    return builder

  def info(self):
    builder = self.builder()
    cfg = builder.builder_config
    return DatasetInfo(
        name="text_files", input_key="tokens", input_shape=(cfg.seq_len,), input_dtype=np.int32,
        num_classes=VOCAB_SIZE, label_key="targets",
        split_sizes={k: v.num_examples for k, v in builder.info.splits.items()},
        input_description=f"byte-level tokens (the bytes 0-255 of the text, e.g. UTF-8), "
                          f"int32 windows of {cfg.seq_len}; {cfg.description}")

  def host_transform(self, arrays):
    out = {k: v for k, v in arrays.items() if k != "window"}
    if "window" in arrays:
      window = np.asarray(arrays["window"], np.int32)
      out["tokens"], out["targets"] = window[:, :-1], window[:, 1:]
    elif "tokens" in out:
      out["tokens"] = np.asarray(out["tokens"], np.int32)
    return out
