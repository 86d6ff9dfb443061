"""Local text files as language-model windows, prepared into records.

    config.data.files = "~/corpus/*.txt"      # a glob (`**` recurses; {stdlib}: Python's); or:
    config.data.manual_dir = "~/corpus"        # every non-hidden file below it
    config.data.seq_len = 256                  # tokens per example (T)
    config.data.stride = 0                     # a window starts every N tokens; 0: seq_len
    config.data.validation_fraction = 0.05     # about the last 5% of the text

The files are concatenated in sorted path order and cut in two on bytes, before any
tokenizing: `train` is the text up to the last newline at or before (1 - validation_fraction)
of the bytes, `validation` the rest. So the validation text is the same for every tokenizer,
and bits per byte of different tokenizers compare. Each file's part of a split is then
encoded on its own by the tokenizer (tokenizers.py; bytes by default: any file works), and the
split's tokens are packed into windows of seq_len + 1 consecutive tokens, one every `stride`
(tokenizers.iter_windows); the model reads window[:-1] (`tokens`) and is scored on window[1:]
(`targets`), so with the default stride every token but a split's first is a target once per
epoch. Each window also records `target_bytes`, the UTF-8 bytes of the text its targets stand
for (seq_len for bytes): bits per byte = loss in bits / target bytes.

The manifest records the tokenizer's spec (kind, file, SHA-256, vocabulary), and so does a
run's run.json: predict rebuilds the tokenizer from it, and a changed tokenizer file is
refused rather than silently giving other tokens.
"""

import glob
import hashlib
import os
import re

import numpy as np

from lepton_jax.data import records, tokenizers
from lepton_jax.data.info import DatasetInfo
from lepton_jax.data.prepare import core
from lepton_jax.data.prepare.image_folder import fraction_tag
from lepton_jax.errors import UserError

STDLIB = "{stdlib}"  # in data.files: the running Python's standard library folder
WINDOWS_PER_UNIT = 16384


def expand(pattern: str) -> str:
  """~ and {stdlib} (sysconfig's 'stdlib' path: text that every machine has) expanded."""
  if STDLIB in pattern:
    import sysconfig
    pattern = pattern.replace(STDLIB, sysconfig.get_paths()["stdlib"])
  return os.path.expanduser(pattern)


def find_files(data_config) -> list[str]:
  """The text files of data.files (a glob) or data.manual_dir, sorted."""
  pattern = str(data_config.get("files") or "")
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


def _read(path: str) -> bytes:
  try:
    with open(path, "rb") as f:
      return f.read()
  except OSError as e:
    raise UserError(f"cannot read text file {path}: {e.strerror or e}") from e


def cut_at_newline(data: bytes, fraction: float) -> int:
  """Where `validation` starts: after the last newline at or before (1 - fraction) of `data`
  (else after the first newline past it; a text without newlines is cut between characters)."""
  nominal = int(round(len(data) * (1.0 - fraction)))
  before = data.rfind(b"\n", 0, nominal)
  if before >= 0:
    return before + 1
  after = data.find(b"\n", nominal)
  if 0 <= after < len(data) - 1:
    return after + 1
  cut = nominal
  while 0 < cut < len(data) and data[cut] & 0xC0 == 0x80:  # inside a UTF-8 character
    cut -= 1
  return cut


class Text:
  """The bytes of the files and the byte range of each split."""

  def __init__(self, paths, fraction: float):
    self.paths = tuple(paths)
    self.parts = [_read(p) for p in self.paths]
    data = b"".join(self.parts)
    self.size = len(data)
    self.digest = hashlib.sha256(data).hexdigest()
    cut = cut_at_newline(data, fraction)
    self.ranges = {"train": (0, cut), "validation": (cut, len(data))}

  def segments(self, split: str):
    """(path, bytes) of every file's part of `split`, in order."""
    lo, hi = self.ranges[split]
    start = 0
    for path, part in zip(self.paths, self.parts):
      a, b = max(lo, start), min(hi, start + len(part))
      if a < b:
        yield path, part[a - start:b - start]
      start += len(part)

  def train_text(self) -> str:
    """The train split as text (what a tokenizer is trained on)."""
    return b"".join(part for _, part in self.segments("train")).decode("utf-8", errors="replace")


class TextFiles(core.Preparer):
  """Language-model windows of local text files (see the module doc)."""

  name = "text_files"
  noun = "windows"

  def __init__(self, paths, seq_len: int = 256, stride: int = 0,
               validation_fraction: float = 0.05, tokenizer=None, text: Text | None = None):
    if not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len < 1:
      raise UserError(f"data.seq_len must be a positive integer, got {seq_len!r}")
    stride = stride or seq_len
    if not isinstance(stride, int) or stride < 1:
      raise UserError(f"data.stride must be a positive integer (0: seq_len), got {stride!r}")
    if not 0.0 < float(validation_fraction) < 1.0:
      raise UserError(f"data.validation_fraction must be between 0 and 1 (exclusive), got "
                      f"{validation_fraction}")
    if not paths:
      raise UserError("text_files needs at least one file (data.files or data.manual_dir)")
    self.paths = tuple(os.path.abspath(p) for p in paths)
    self.seq_len, self.stride = seq_len, stride
    self.validation_fraction = float(validation_fraction)
    self.tokenizer = tokenizer if tokenizer is not None else tokenizers.BytesTokenizer()
    self.vocab_size = int(self.tokenizer.vocab_size)
    self._text = text
    self._windows = {}

  def __getstate__(self):
    return {**self.__dict__, "_text": None, "_windows": {}}

  @classmethod
  def from_config(cls, data_config, tokenizer=None) -> "TextFiles":
    return cls(find_files(data_config), data_config.get("seq_len", 256),
               data_config.get("stride", 0), data_config.get("validation_fraction", 0.05),
               tokenizer)

  def text(self) -> Text:
    if self._text is None:
      self._text = Text(self.paths, self.validation_fraction)
    return self._text

  def slug(self) -> str:
    base = re.sub(r"[^a-z0-9]+", "_", os.path.basename(self.paths[0]).lower()).strip("_")[:30]
    tok = ""
    if self.tokenizer.kind != "bytes":
      tok = "_tok" + self.tokenizer.fingerprint[:8]
    return (f"{base or 'text'}_{self.text().digest[:12]}_t{self.seq_len}_s{self.stride}"
            f"_val{fraction_tag(self.validation_fraction)}{tok}")

  def fingerprint(self) -> str:
    return f"{records.FORMAT}|{self.slug()}|{self.text().digest}|{self.tokenizer.fingerprint}"

  def describe(self) -> str:
    more = ", ..." if len(self.paths) > 1 else ""
    what = "byte-level" if self.tokenizer.kind == "bytes" else self.tokenizer.describe()
    return f"{what} windows of {len(self.paths)} text file(s) ({self.paths[0]}{more})"

  def windows(self, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(windows (N, seq_len + 1), target_bytes (N,)) of `split`."""
    if split not in self._windows:
      chunks = (self.tokenizer.encode_bytes(data, path)
                for path, data in self.text().segments(split))
      blocks = list(tokenizers.iter_windows(chunks, self.seq_len, self.tokenizer.byte_lengths,
                                            self.stride))
      dtype = tokenizers.token_dtype(self.vocab_size)
      windows = (np.concatenate([w for w, _ in blocks]) if blocks
                 else np.zeros((0, self.seq_len + 1), dtype))
      target_bytes = (np.concatenate([b for _, b in blocks]) if blocks
                      else np.zeros((0,), np.int64))
      self._windows[split] = (windows, target_bytes)
    return self._windows[split]

  def plan(self) -> list[core.Unit]:
    chunks = []
    for split in ("train", "validation"):
      n = len(self.windows(split)[0])
      if n == 0:
        lo, hi = self.text().ranges[split]
        raise UserError(f"{self.describe()}: the {split} split ({hi - lo:,} bytes, "
                        f"validation_fraction={self.validation_fraction}) holds fewer than "
                        f"data.seq_len + 1 = {self.seq_len + 1} tokens; give more text, lower "
                        "data.seq_len or change data.validation_fraction")
      chunks += [(split, range(lo, min(n, lo + WINDOWS_PER_UNIT)))
                 for lo in range(0, n, WINDOWS_PER_UNIT)]
    return core.number_units(chunks)

  def features(self) -> dict[str, records.Feature]:
    return {"window": records.array_feature(tokenizers.token_dtype(self.vocab_size),
                                            (self.seq_len + 1,)),
            "target_bytes": records.array_feature(np.int32)}

  def examples(self, unit: core.Unit):
    windows, target_bytes = self.windows(unit.split)
    for i in unit.items:
      yield {"window": windows[i], "target_bytes": target_bytes[i]}

  def read_transform(self) -> tuple[str, dict]:
    return "lm_window", {}

  def info(self) -> DatasetInfo:
    return DatasetInfo(
        name="text_files", input_key="tokens", input_shape=(self.seq_len,), input_dtype=np.int32,
        num_classes=self.vocab_size, label_key="targets", split_sizes={},
        input_description=(f"{self.tokenizer.describe()} token ids, int32 windows of "
                           f"{self.seq_len}; {self.describe()}"),
        tokenizer=self.tokenizer.spec)
