"""Local text files as language-model windows, prepared into records.

    config.data.files = "~/corpus/*.txt"      # a glob (`**` recurses; {stdlib}: Python's); or:
    config.data.manual_dir = "~/corpus"        # every non-hidden file below it
    config.data.seq_len = 256                  # tokens per example (T)
    config.data.stride = 0                     # a window starts every N tokens; 0: seq_len
    config.data.validation_fraction = 0.05     # the last 5% of the tokens

Without a tokenizer the tokens are the bytes of the files (0-255: any file works). With one
(an object with `encode(text) -> ids`, `decode(ids) -> text`, `vocab_size` and `fingerprint`),
each file is read as UTF-8 (undecodable bytes replaced) and encoded on its own. The files'
tokens are concatenated in sorted path order; the first (1 - validation_fraction) of them are
`train`, the rest `validation` (no window straddles the two). A window is seq_len + 1
consecutive tokens, one every `stride`; the model reads window[:-1] (`tokens`) and is scored on
window[1:] (`targets`), so with the default stride every token but a split's first is a target
once per epoch.

Every window also records `target_bytes`: the UTF-8 length of the text its targets decode to
(seq_len for bytes), so that bits per byte = loss in bits / bytes stays comparable across
tokenizers. For subword tokens this is the length of `decode(targets)`: over a split it adds up
to the split's text, except where a window boundary falls inside a multi-byte character.
"""

import glob
import hashlib
import os
import re

import numpy as np

from lepton_jax.data import records
from lepton_jax.data.info import DatasetInfo
from lepton_jax.data.prepare import core
from lepton_jax.data.prepare.image_folder import fraction_tag
from lepton_jax.errors import UserError

BYTE_VOCAB = 256
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


def windows(tokens: np.ndarray, length: int, stride: int) -> np.ndarray:
  """(N, length) windows of `tokens` starting every `stride` tokens (a view)."""
  n = (len(tokens) - length) // stride + 1 if len(tokens) >= length else 0
  return np.lib.stride_tricks.as_strided(tokens, (n, length),
                                         (stride * tokens.strides[0], tokens.strides[0]),
                                         writeable=False)


def _fingerprint_of(tokenizer) -> str:
  fingerprint = getattr(tokenizer, "fingerprint", "")
  return str(fingerprint() if callable(fingerprint) else fingerprint)


def _token_dtype(vocab_size: int):
  return np.uint8 if vocab_size <= 256 else np.uint16 if vocab_size <= 65536 else np.int32


class TextFiles(core.Preparer):
  """Language-model windows of local text files (see the module doc)."""

  name = "text_files"
  noun = "windows"

  def __init__(self, paths, seq_len: int = 256, stride: int = 0,
               validation_fraction: float = 0.05, tokenizer=None):
    if not isinstance(seq_len, int) or seq_len < 1:
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
    self.tokenizer = tokenizer
    self.vocab_size = int(tokenizer.vocab_size) if tokenizer is not None else BYTE_VOCAB
    self._digest = None
    self._splits = None

  @classmethod
  def from_config(cls, data_config, tokenizer=None) -> "TextFiles":
    return cls(find_files(data_config), data_config.get("seq_len", 256),
               data_config.get("stride", 0), data_config.get("validation_fraction", 0.05),
               tokenizer)

  def digest(self) -> str:
    """A hash of the files' content (cheaper than tokenizing: computed on every use)."""
    if self._digest is None:
      h = hashlib.sha256()
      for path in self.paths:
        h.update(_read(path))
      self._digest = h.hexdigest()
    return self._digest

  def slug(self) -> str:
    base = re.sub(r"[^a-z0-9]+", "_", os.path.basename(self.paths[0]).lower()).strip("_")[:30]
    tok = ""
    if self.tokenizer is not None:
      tok = "_tok" + hashlib.sha256(_fingerprint_of(self.tokenizer).encode()).hexdigest()[:8]
    return (f"{base or 'text'}_{self.digest()[:12]}_t{self.seq_len}_s{self.stride}"
            f"_val{fraction_tag(self.validation_fraction)}{tok}")

  def fingerprint(self) -> str:
    return f"{records.FORMAT}|{self.slug()}|{self.digest()}"

  def describe(self) -> str:
    what = "byte-level" if self.tokenizer is None else "tokenized"
    more = ", ..." if len(self.paths) > 1 else ""
    return f"{what} windows of {len(self.paths)} text file(s) ({self.paths[0]}{more})"

  def tokens(self) -> np.ndarray:
    """Every file's tokens, concatenated."""
    if self.tokenizer is None:
      return np.frombuffer(b"".join(_read(p) for p in self.paths), np.uint8)
    dtype = _token_dtype(self.vocab_size)
    parts = [np.asarray(self.tokenizer.encode(_read(p).decode("utf-8", errors="replace")), dtype)
             for p in self.paths]
    return np.concatenate(parts) if parts else np.zeros((0,), dtype)

  def splits(self) -> dict[str, np.ndarray]:
    """The train and validation tokens, each long enough for one window."""
    if self._splits is None:
      tokens, window = self.tokens(), self.seq_len + 1
      source = f"{len(self.paths)} text file(s) ({self.paths[0]}, ...)" if len(self.paths) > 1 \
          else self.paths[0]
      if len(tokens) < window:
        raise UserError(f"{source} holds {len(tokens):,} tokens, fewer than one window of "
                        f"data.seq_len + 1 = {window}; give more text or lower data.seq_len")
      cut = int(round(len(tokens) * (1.0 - self.validation_fraction)))
      self._splits = {"train": tokens[:cut], "validation": tokens[cut:]}
      for split, part in self._splits.items():
        if len(part) < window:
          raise UserError(f"{source}: the {split} split gets {len(part):,} tokens "
                          f"(validation_fraction={self.validation_fraction}), fewer than one "
                          f"window of {window}; give more text, lower data.seq_len or change "
                          "data.validation_fraction")
    return self._splits

  def plan(self) -> list[core.Unit]:
    chunks = []
    for split, part in self.splits().items():
      n = len(windows(part, self.seq_len + 1, self.stride))
      chunks += [(split, range(lo, min(n, lo + WINDOWS_PER_UNIT)))
                 for lo in range(0, n, WINDOWS_PER_UNIT)]
    return core.number_units(chunks)

  def features(self) -> dict[str, records.Feature]:
    return {"window": records.array_feature(_token_dtype(self.vocab_size), (self.seq_len + 1,)),
            "target_bytes": records.array_feature(np.int32)}

  def examples(self, unit: core.Unit):
    all_windows = windows(self.splits()[unit.split], self.seq_len + 1, self.stride)
    for i in unit.items:
      window = all_windows[i]
      if self.tokenizer is None:
        target_bytes = self.seq_len
      else:
        target_bytes = len(self.tokenizer.decode(window[1:].tolist()).encode("utf-8"))
      yield {"window": window, "target_bytes": target_bytes}

  def read_transform(self) -> tuple[str, dict]:
    return "lm_window", {}

  def info(self) -> DatasetInfo:
    kind = ("byte-level tokens (the bytes 0-255 of the text, e.g. UTF-8)" if self.tokenizer is None
            else f"token ids of a tokenizer ({_fingerprint_of(self.tokenizer)}), vocabulary "
                 f"{self.vocab_size}")
    return DatasetInfo(
        name="text_files", input_key="tokens", input_shape=(self.seq_len,), input_dtype=np.int32,
        num_classes=self.vocab_size, label_key="targets", split_sizes={},
        input_description=f"{kind}, int32 windows of {self.seq_len}; {self.describe()}")
