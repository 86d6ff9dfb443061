"""Tokenizers for language models, and text packed into fixed-length token windows.

    from lepton_jax.data import tokenizers
    tok = tokenizers.build_tokenizer("sentencepiece", "~/lm/code4k.model", vocab_size=4096,
                                     files=paths)    # trained on `paths` if the file is missing
    ids = tok.encode("def f(x):\n\treturn x")        # list[int]; tok.decode(ids) gives the text back
    windows, target_bytes = tokenizers.pack_windows(np.asarray(ids), 128, tok.byte_lengths)

Three kinds:

  bytes          the UTF-8 bytes 0-255 (the default): no file, nothing out of vocabulary;
  sentencepiece  a SentencePiece `.model` file; `train_sentencepiece` makes one offline,
                 deterministically (the same corpus and settings give the same file, byte for
                 byte), with byte fallback and no normalization, so that decode(encode(text))
                 is the text, whitespace, tabs, newlines and any Unicode included;
  tiktoken       a `.tiktoken` BPE file (base64 token and rank per line) with the regex that
                 splits text before BPE, named (gpt2, cl100k, o200k) or `regex:<pattern>`.

Every tokenizer has a `spec` (kind, file path, SHA-256 of the file, vocabulary size, pattern)
and a `fingerprint` (a hash of the spec without the path), so that prepared data and
checkpoints can record which tokenizer made them and refuse another (`check_same`).

Bits per byte for any tokenizer: `byte_lengths[id]` is the number of UTF-8 bytes token `id`
adds to the decoded text, and `pack_windows` gives each window the bytes of its targets, so
bits per byte = sum(loss) / ln 2 / sum(target bytes) over the same targets.
"""

import abc
import base64
import binascii
import functools
import hashlib
import importlib
import io
import itertools
import json
import os
import re
import sys
import tempfile
from typing import Iterable, Iterator, Sequence

import numpy as np

from lepton_jax.errors import UserError

KINDS = ("bytes", "sentencepiece", "tiktoken")
MODEL_TYPES = ("bpe", "unigram")

# The regexes that split text into words before BPE, copied from tiktoken's own
# tiktoken_ext/openai_public.py (tiktoken 0.14): r50k_base (GPT-2), cl100k_base, o200k_base.
PATTERNS = {
    "gpt2": r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s""",
    "cl100k": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
    "o200k": "|".join([
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]),
}
REGEX_PREFIX = "regex:"  # data.tokenizer_pattern = "regex:<pattern>": a pattern of one's own

SPACE_PIECE = "\u2581"  # SentencePiece's stand-in for a space inside pieces
ENCODE_CHUNK_CHARS = 1 << 14  # text is encoded in chunks this long, cut after a newline
MAX_LINE_BYTES = 4192  # SentencePiece's default: longer lines are left out of training


def token_dtype(vocab_size: int) -> np.dtype:
  """The smallest unsigned integer dtype that holds every token id."""
  for dtype in (np.uint8, np.uint16, np.uint32):
    if vocab_size <= np.iinfo(dtype).max + 1:
      return np.dtype(dtype)
  return np.dtype(np.uint64)


def spec_fingerprint(spec: dict) -> str:
  """A hash of a tokenizer spec without its path: the same file elsewhere is the same tokenizer."""
  content = {k: v for k, v in spec.items() if k != "path"}
  return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def describe_spec(spec: dict, kind: str = "") -> str:
  """One line naming a tokenizer: its kind (or `kind`), file, size, pattern and hash."""
  if spec.get("kind") == "bytes":
    return "bytes (the 256 UTF-8 byte values)"
  pattern = f", pattern {spec['pattern']}" if spec.get("pattern") else ""
  return (f"{kind or spec.get('kind')} {spec.get('path')} ({spec.get('vocab_size')} tokens{pattern}, "
          f"sha256 {str(spec.get('sha256'))[:12]})")


class Tokenizer(abc.ABC):
  """Text <-> token ids, and the UTF-8 bytes each id stands for."""

  kind: str = ""
  vocab_size: int = 0

  @abc.abstractmethod
  def encode(self, text: str) -> list[int]:
    """The token ids of `text`."""

  @abc.abstractmethod
  def decode(self, ids: Sequence[int]) -> str:
    """The text of token ids (invalid UTF-8 replaced by U+FFFD)."""

  @functools.cached_property
  def byte_lengths(self) -> np.ndarray:
    """(vocab_size,) int32: the UTF-8 bytes each token adds to the decoded text."""
    return np.asarray(self._byte_lengths(), np.int32)

  @abc.abstractmethod
  def _byte_lengths(self) -> list[int]:
    """The UTF-8 bytes of each token id in turn."""

  @property
  def spec(self) -> dict:
    return {"kind": self.kind, "vocab_size": self.vocab_size}

  @property
  def fingerprint(self) -> str:
    return spec_fingerprint(self.spec)

  def describe(self) -> str:
    return describe_spec(self.spec)

  def encode_bytes(self, data: bytes, source: str) -> np.ndarray:
    """The tokens of a file's content (UTF-8 text), as a 1-D array of `token_dtype`."""
    try:
      text = data.decode("utf-8")
    except UnicodeDecodeError as e:
      raise UserError(f"{source} is not UTF-8 text (byte {e.start}: {data[e.start:e.start + 4]!r}); "
                      f"a {self.kind} tokenizer reads UTF-8: convert the file or use "
                      "data.tokenizer='bytes'") from e
    return np.asarray(self.encode(text), token_dtype(self.vocab_size))


class BytesTokenizer(Tokenizer):
  """The UTF-8 bytes of the text as tokens 0..255: any file works, nothing is out of vocabulary."""

  kind = "bytes"
  vocab_size = 256

  def encode(self, text: str) -> list[int]:
    return list(text.encode("utf-8"))

  def decode(self, ids: Sequence[int]) -> str:
    return bytes(int(t) % 256 for t in ids).decode("utf-8", errors="replace")

  def _byte_lengths(self) -> list[int]:
    return [1] * 256

  def encode_bytes(self, data: bytes, source: str) -> np.ndarray:
    return np.frombuffer(data, np.uint8)  # any bytes, UTF-8 or not


# ---------------------------------------------------------------- files

def _import(module: str, kind: str):
  try:
    return importlib.import_module(module)
  except ImportError as e:
    raise UserError(f"data.tokenizer='{kind}' needs the {kind} package: pip install {kind}") from e


def read_model_file(path: str, kind: str) -> tuple[str, bytes]:
  """(absolute path, content) of a tokenizer file, refused when missing or empty."""
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.isfile(path):
    raise UserError(f"tokenizer file {path} does not exist; give data.tokenizer_path of a "
                    f"{kind} file" + (", or data.vocab_size to train one there from the corpus"
                                      if kind == "sentencepiece" else ""))
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise UserError(f"cannot read tokenizer file {path}: {e.strerror or e}") from e
  if not data:
    raise UserError(f"tokenizer file {path} is empty; delete it and train or copy the {kind} "
                    "file again")
  return path, data


class FileTokenizer(Tokenizer):
  """A tokenizer defined by a file, identified by the file's SHA-256."""

  def __init__(self, path: str, data: bytes):
    self.path = path
    self.sha256 = hashlib.sha256(data).hexdigest()

  @property
  def spec(self) -> dict:
    return {"kind": self.kind, "path": self.path, "sha256": self.sha256,
            "vocab_size": self.vocab_size}


class SentencePieceTokenizer(FileTokenizer):
  """A SentencePiece model (`.model`). A literal U+2581 in the text, which SentencePiece
  would decode as a space, is encoded as its byte-fallback tokens when the model has them."""

  kind = "sentencepiece"

  def __init__(self, path: str, data: bytes):
    super().__init__(path, data)
    spm = _import("sentencepiece", self.kind)
    from google.protobuf import message
    from sentencepiece import sentencepiece_model_pb2
    proto = sentencepiece_model_pb2.ModelProto()
    try:
      proto.ParseFromString(data)
      self._sp = spm.SentencePieceProcessor(model_proto=data)
    except (message.DecodeError, RuntimeError) as e:
      raise _corrupt_model(path) from e
    # A file cut at a field boundary can still parse: a real model has all three parts.
    if not (proto.pieces and proto.HasField("trainer_spec") and proto.HasField("normalizer_spec")):
      raise _corrupt_model(path)
    self.vocab_size = int(self._sp.vocab_size())
    self.model_type = sentencepiece_model_pb2.TrainerSpec.ModelType.Name(
        proto.trainer_spec.model_type).lower()
    space_bytes = SPACE_PIECE.encode("utf-8")
    escape = [self._sp.piece_to_id(f"<0x{b:02X}>") for b in space_bytes]
    self._escape = escape if all(self._sp.is_byte(i) for i in escape) else None

  def encode(self, text: str) -> list[int]:
    ids = []
    for index, part in enumerate(text.split(SPACE_PIECE) if self._escape else [text]):
      if index:
        ids += self._escape
      for chunk_ids in self._sp.encode(_newline_chunks(part)):
        ids += chunk_ids
    return ids

  def decode(self, ids: Sequence[int]) -> str:
    return self._sp.decode([int(i) for i in ids])

  def _byte_lengths(self) -> list[int]:
    sp, lengths = self._sp, []
    for i in range(self.vocab_size):
      if sp.is_byte(i):
        lengths.append(1)
      elif sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
        lengths.append(0)
      else:
        lengths.append(len(sp.id_to_piece(i).replace(SPACE_PIECE, " ").encode("utf-8")))
    return lengths

  def encode_bytes(self, data: bytes, source: str) -> np.ndarray:
    ids = super().encode_bytes(data, source)
    unknown = self._sp.unk_id()
    if unknown >= 0 and np.any(ids == unknown):
      raise UserError(f"{source} has text that tokenizer {self.path} cannot encode (it has no "
                      "byte fallback); train one here (data.vocab_size and a new "
                      "data.tokenizer_path) or use data.tokenizer='bytes'")
    return ids

  def describe(self) -> str:
    return describe_spec(self.spec, f"sentencepiece {self.model_type}")


def _corrupt_model(path: str) -> UserError:
  return UserError(f"tokenizer file {path} is not a SentencePiece model (corrupt or truncated); "
                   "delete it and train again (data.vocab_size) or copy the .model file again")


def _newline_chunks(text: str) -> list[str]:
  """Text cut after newlines into pieces of about ENCODE_CHUNK_CHARS: SentencePiece encodes a
  batch of short strings faster than one long one, and pieces learned from lines (as
  train_sentencepiece's are) never hold a newline, so the cuts change no token."""
  if len(text) <= ENCODE_CHUNK_CHARS:
    return [text] if text else []
  chunks, start = [], 0
  while start < len(text):
    cut = text.find("\n", start + ENCODE_CHUNK_CHARS)
    end = len(text) if cut < 0 else cut + 1
    chunks.append(text[start:end])
    start = end
  return chunks


class TiktokenTokenizer(FileTokenizer):
  """A tiktoken BPE file (`<base64 token> <rank>` per line) with its pre-splitting regex."""

  kind = "tiktoken"

  def __init__(self, path: str, data: bytes, pattern: str):
    super().__init__(path, data)
    tiktoken = _import("tiktoken", self.kind)
    self.pattern = pattern
    ranks = parse_tiktoken_ranks(data, path)
    self.vocab_size = max(ranks.values()) + 1
    try:
      self._encoding = tiktoken.Encoding(os.path.basename(path), pat_str=pattern_regex(pattern),
                                         mergeable_ranks=ranks, special_tokens={})
    except ValueError as e:  # the regex did not compile
      raise UserError(f"data.tokenizer_pattern={pattern!r} is not a valid regex: "
                      f"{str(e).splitlines()[0]}") from e
    self._token_bytes = {rank: token for token, rank in ranks.items()}

  def encode(self, text: str) -> list[int]:
    return self._encoding.encode_ordinary(text)

  def decode(self, ids: Sequence[int]) -> str:
    # Ranks may have gaps: an id without a token (a model can sample one) decodes to nothing.
    return b"".join(self._token_bytes.get(int(i), b"") for i in ids).decode("utf-8", errors="replace")

  def _byte_lengths(self) -> list[int]:
    return [len(self._token_bytes.get(i, b"")) for i in range(self.vocab_size)]

  def encode_bytes(self, data: bytes, source: str) -> np.ndarray:
    ids = super().encode_bytes(data, source)
    # tiktoken drops the text its regex does not match: a custom pattern may not cover it all.
    if int(self.byte_lengths[ids].sum()) != len(data):
      raise UserError(f"data.tokenizer_pattern={self.pattern!r} does not match all of {source} "
                      "(tiktoken drops the text between matches); use a pattern that matches "
                      "every character, e.g. one ending in '|\\s+|.'")
    return ids

  @property
  def spec(self) -> dict:
    return dict(super().spec, pattern=self.pattern)


def pattern_regex(pattern: str) -> str:
  """The regex of a pattern name (gpt2, cl100k, o200k) or of `regex:<pattern>`."""
  if pattern in PATTERNS:
    return PATTERNS[pattern]
  if pattern.startswith(REGEX_PREFIX) and pattern[len(REGEX_PREFIX):]:
    return pattern[len(REGEX_PREFIX):]
  raise UserError(f"data.tokenizer_pattern={pattern!r} is not a pattern; choose "
                  f"{', '.join(PATTERNS)} (the regex the .tiktoken file was trained with) or "
                  f"'{REGEX_PREFIX}<your regex>'")


def parse_tiktoken_ranks(data: bytes, path: str) -> dict[bytes, int]:
  """{token bytes: rank} of a .tiktoken file. Parsed here, not by tiktoken.load, whose
  loader caches local files by path in a temp folder and can return a stale copy."""
  ranks, seen = {}, set()
  for number, line in enumerate(data.splitlines(), 1):
    if not line.strip():
      continue
    try:
      token, rank = line.split()
      token, rank = base64.b64decode(token, validate=True), int(rank)
    except (ValueError, binascii.Error) as e:
      raise UserError(f"tokenizer file {path} line {number} is not '<base64 token> <rank>' "
                      f"({line[:40]!r}); give a .tiktoken BPE file") from e
    if rank < 0 or rank in seen or token in ranks:
      raise UserError(f"tokenizer file {path} line {number} repeats a token or rank (or the rank "
                      "is negative); give a .tiktoken BPE file")
    ranks[token] = rank
    seen.add(rank)
  missing = [b for b in range(256) if bytes([b]) not in ranks]
  if missing:
    raise UserError(f"tokenizer file {path} lacks {len(missing)} of the 256 single-byte tokens "
                    f"(e.g. byte {missing[0]}); a .tiktoken BPE file must rank every byte")
  return ranks


def load(kind: str, path: str = "", pattern: str = "") -> Tokenizer:
  """A tokenizer from plain arguments: kind, its file and (tiktoken) its pattern."""
  if kind not in KINDS:
    raise UserError(f"data.tokenizer={kind!r} is not a tokenizer; choose {', '.join(KINDS)}")
  if kind == "bytes":
    if path:
      raise UserError(f"data.tokenizer_path={path!r} is set but data.tokenizer='bytes' reads no "
                      "file; set data.tokenizer to 'sentencepiece' or 'tiktoken', or clear the path")
    return BytesTokenizer()
  if not path:
    raise UserError(f"data.tokenizer='{kind}' needs data.tokenizer_path, the path of its file")
  if kind == "tiktoken":
    if not pattern:
      raise UserError(f"data.tokenizer='tiktoken' needs data.tokenizer_pattern: "
                      f"{', '.join(PATTERNS)} or '{REGEX_PREFIX}<your regex>'")
    pattern_regex(pattern)  # a wrong name fails before the file is read
    return TiktokenTokenizer(*read_model_file(path, kind), pattern)
  return SentencePieceTokenizer(*read_model_file(path, kind))


def from_spec(spec: dict) -> Tokenizer:
  """The tokenizer a run or a prepared dataset recorded, refused if its file has changed."""
  tokenizer = load(spec.get("kind", "bytes"), spec.get("path", ""), spec.get("pattern", ""))
  if tokenizer.fingerprint != spec_fingerprint(spec):
    raise UserError(f"tokenizer file {spec.get('path')} is not the one recorded (sha256 "
                    f"{str(spec.get('sha256'))[:12]}, now {tokenizer.spec.get('sha256', '')[:12]}); "
                    "restore that file: it defines the tokens of the data and the model")
  return tokenizer


def check_same(tokenizer: Tokenizer, recorded: dict, what: str) -> None:
  """Refuses `tokenizer` if it is not the one `recorded` (a spec) describes."""
  if tokenizer.fingerprint != spec_fingerprint(recorded):
    raise UserError(f"{what} was made with tokenizer {describe_spec(recorded)}, but this one is "
                    f"{tokenizer.describe()}; use the same tokenizer (file and data.tokenizer_* "
                    "settings) or prepare the data and train anew")


# ---------------------------------------------------------------- training SentencePiece

def corpus_lines(files: Sequence[str], texts: Iterable[str]) -> Iterator[str]:
  """The lines of `files` (UTF-8), then of `texts`, without their newlines."""
  for path in files:
    try:
      with open(path, encoding="utf-8", newline="") as f:
        for line in f:
          yield line.rstrip("\n")
    except UnicodeDecodeError as e:
      raise UserError(f"{path} is not UTF-8 text ({e.reason}); SentencePiece trains on UTF-8: "
                      "convert it or leave it out") from e
    except OSError as e:
      raise UserError(f"cannot read text file {path}: {e.strerror or e}") from e
  for text in texts:
    yield from text.split("\n")


def sample_lines(lines: Iterable[str], size: int, seed: int) -> list[str]:
  """`size` of the non-empty lines no longer than MAX_LINE_BYTES, drawn uniformly (reservoir
  sampling) with numpy's seeded generator; all of them, in order, when there are fewer.
  Drawn here rather than by SentencePiece, whose sampler has a fixed seed and draws through
  the C++ library's integer distribution, which differs between platforms."""
  rng = np.random.default_rng(seed)
  usable = (line for line in lines
            if line and len(line.encode("utf-8")) <= MAX_LINE_BYTES)
  sample, seen = [], 0
  while batch := list(itertools.islice(usable, 1 << 16)):
    if len(sample) < size:
      taken = batch[:size - len(sample)]
      sample += taken
      seen += len(taken)
      batch = batch[len(taken):]
    if not batch:
      continue
    slots = rng.integers(0, np.arange(seen + 1, seen + len(batch) + 1))  # line i replaces slot < size
    for position in np.flatnonzero(slots < size):
      sample[slots[position]] = batch[position]
    seen += len(batch)
  return sample


def sentencepiece_options(vocab_size: int, model_type: str, character_coverage: float,
                          num_threads: int) -> dict:
  """The trainer's options: byte fallback and no normalization for exact round trips,
  whitespace-only pieces for indentation, a fixed thread count (unigram's result depends
  on it) and no bos/eos (the windows are plain running text)."""
  return dict(
      vocab_size=vocab_size, model_type=model_type, byte_fallback=True,
      character_coverage=character_coverage, normalization_rule_name="identity",
      remove_extra_whitespaces=False, add_dummy_prefix=False, allow_whitespace_only_pieces=True,
      split_digits=True, input_sentence_size=0, max_sentence_length=MAX_LINE_BYTES,
      num_threads=num_threads, unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1, minloglevel=2)


def train_sentencepiece(output_path: str, vocab_size: int, *, files: Sequence[str] = (),
                        texts: Iterable[str] = (), model_type: str = "bpe",
                        max_sentences: int = 1_000_000, seed: int = 0,
                        character_coverage: float = 0.9995, num_threads: int = 4) -> str:
  """Trains a SentencePiece model on the lines of `files` and `texts`; returns its path.

  Deterministic: the same lines and arguments give the same file, byte for byte. A corpus
  of more than `max_sentences` usable lines is sampled down to that many, drawn by `seed`.
  The file is written to a temporary name and renamed, so a killed run leaves no partial
  model.
  """
  if model_type not in MODEL_TYPES:
    raise UserError(f"SentencePiece model type {model_type!r} is unknown; choose "
                    f"{' or '.join(MODEL_TYPES)}")
  if not isinstance(vocab_size, int) or vocab_size <= 257:
    raise UserError(f"data.vocab_size={vocab_size!r} is too small for SentencePiece: it needs "
                    "257 tokens (256 bytes and <unk>) and some for text; use e.g. 4096")
  spm = _import("sentencepiece", "sentencepiece")
  lines = sample_lines(corpus_lines(files, texts), max_sentences, seed)
  if not lines:
    raise UserError("the corpus to train the SentencePiece tokenizer on holds no text; give "
                    "non-empty text files")
  model = io.BytesIO()
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model,
        **sentencepiece_options(vocab_size, model_type, character_coverage, num_threads))
  except RuntimeError as e:
    raise _training_error(str(e), vocab_size) from e
  return write_atomically(output_path, model.getvalue())


def _training_error(message: str, vocab_size: int) -> UserError:
  """A UserError for what SentencePiece's trainer said (its messages are C++ check failures)."""
  small = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", message)
  large = re.search(r"Please set it to a value <= (\d+)", message)
  if small:
    return UserError(f"data.vocab_size={vocab_size} is too small for this corpus: SentencePiece "
                     f"needs at least {small.group(2)} (256 bytes, <unk> and its characters); "
                     "raise it")
  if large:
    return UserError(f"data.vocab_size={vocab_size} is too large for this corpus: at most "
                     f"{large.group(1)} pieces can be learned from it; lower it or give more text")
  detail = message.strip().splitlines()[0] if message.strip() else "no reason given"
  return UserError(f"SentencePiece training failed: {detail}; check the corpus and data.vocab_size")


def write_atomically(path: str, data: bytes) -> str:
  """Writes `data` to `path` through a temporary file in the same folder and a rename."""
  path = os.path.abspath(os.path.expanduser(path))
  folder = os.path.dirname(path)
  try:
    os.makedirs(folder, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=os.path.basename(path) + ".",
                                     suffix=".tmp", delete=False) as f:
      temp = f.name
      try:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
      except BaseException:
        f.close()
        os.unlink(temp)
        raise
    os.replace(temp, path)
  except OSError as e:
    raise UserError(f"cannot write tokenizer file {path}: {e.strerror or e}") from e
  return path


def build_tokenizer(kind: str = "bytes", path: str = "", *, pattern: str = "", vocab_size: int = 0,
                    model_type: str = "bpe", files: Sequence[str] = (),
                    texts: Iterable[str] | None = None, max_sentences: int = 1_000_000,
                    seed: int = 0) -> Tokenizer:
  """The tokenizer of a config: loads `path`, or (sentencepiece, `vocab_size` > 0, no file at
  `path` yet) first trains one there on `files` and `texts`. A non-zero `vocab_size` must
  match the file."""
  if kind == "sentencepiece" and path and vocab_size and not os.path.exists(
      os.path.expanduser(path)):
    if not files and texts is None:
      raise UserError(f"tokenizer file {path} does not exist and there is no corpus to train "
                      "it on; give data.files or the path of a trained .model")
    print(f"note: training a SentencePiece {model_type} tokenizer of {vocab_size} tokens on the "
          f"corpus; writing it to {os.path.abspath(os.path.expanduser(path))}",
          file=sys.stderr, flush=True)
    train_sentencepiece(path, vocab_size, files=files, texts=texts or (), model_type=model_type,
                        max_sentences=max_sentences, seed=seed)
  if kind == "bytes" and vocab_size not in (0, 256):
    raise UserError(f"data.vocab_size={vocab_size} does not apply to data.tokenizer='bytes' "
                    "(256 tokens); set it to 0, or choose data.tokenizer='sentencepiece'")
  tokenizer = load(kind, path, pattern)
  if vocab_size and tokenizer.vocab_size != vocab_size:
    raise UserError(f"tokenizer file {tokenizer.spec.get('path')} has {tokenizer.vocab_size} "
                    f"tokens, not data.vocab_size={vocab_size}; set data.vocab_size=0 to use it "
                    "as it is, or give a new data.tokenizer_path to train another")
  return tokenizer


def encode_files(tokenizer: Tokenizer, paths: Sequence[str]) -> Iterator[np.ndarray]:
  """The tokens of each file in turn (1-D arrays of token_dtype(vocab_size))."""
  for path in paths:
    try:
      with open(path, "rb") as f:
        data = f.read()
    except OSError as e:
      raise UserError(f"cannot read text file {path}: {e.strerror or e}") from e
    yield tokenizer.encode_bytes(data, path)


# ---------------------------------------------------------------- packing

def pack_windows(ids: np.ndarray, seq_len: int, byte_lengths: np.ndarray,
                 stride: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Windows of seq_len + 1 tokens starting every `stride` (0: seq_len) tokens, and the
  UTF-8 bytes of each window's targets (window[1:]).

  Returns (windows (N, seq_len + 1), a read-only view of `ids`; target_bytes (N,) int64).
  A token is counted, whole, in every window where it is a target: a token that straddles
  a window edge (its text partly before it) belongs to the window that predicts it. With
  stride = seq_len the targets of consecutive windows are consecutive and disjoint, so the
  byte counts add up to the bytes of the text after the first token.
  """
  ids = np.asarray(ids)
  stride = stride or seq_len
  if seq_len < 1 or stride < 1:
    raise ValueError(f"seq_len and stride must be positive, got {seq_len} and {stride}")
  length = seq_len + 1
  count = (len(ids) - length) // stride + 1 if len(ids) >= length else 0
  windows = np.lib.stride_tricks.as_strided(ids, (count, length), (stride * ids.strides[0],
                                                                   ids.strides[0]), writeable=False)
  cumulative = np.concatenate([[0], np.cumsum(np.asarray(byte_lengths, np.int64)[ids])])
  starts = np.arange(count, dtype=np.int64) * stride
  return windows, cumulative[starts + length] - cumulative[starts + 1]


def iter_windows(chunks: Iterable[np.ndarray], seq_len: int, byte_lengths: np.ndarray,
                 stride: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """`pack_windows` of the concatenation of `chunks` (e.g. `encode_files`), in blocks: one
  (windows, target_bytes) pair per chunk that completes a window; the windows are copies."""
  stride = stride or seq_len
  carry, skip = None, 0  # tokens after the last window's start; tokens to drop (stride > window)
  for chunk in chunks:
    chunk = np.asarray(chunk)
    if skip:
      dropped = min(skip, len(chunk))
      chunk, skip = chunk[dropped:], skip - dropped
    buffer = chunk if carry is None or not len(carry) else np.concatenate([carry, chunk])
    windows, target_bytes = pack_windows(buffer, seq_len, byte_lengths, stride)
    if len(windows):
      yield np.array(windows), target_bytes
    start = len(windows) * stride
    carry = buffer[start:]
    skip += max(0, start - len(buffer))
