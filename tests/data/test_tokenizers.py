"""Tokenizers and packed token windows (lepton_jax/data/tokenizers.py)."""

import base64
import hashlib
import io
import os
import shutil
import sysconfig

import numpy as np
import pytest

from lepton_jax.data import tokenizers
from lepton_jax.errors import UserError

STDLIB = sysconfig.get_paths()["stdlib"]
# Text that trips up tokenizers: tabs, runs of spaces, CRLF, blank lines, U+2581 (SentencePiece's
# space stand-in), a NUL, emoji, a zero-width space, a BOM, piece names, and no final newline.
EDGE_TEXTS = ["", " ", "\n", "\t\tx  =  1\r\n\n\n    y", "\u2581", "\u2581\u2581a \u2581", "\x00\x7f",
              "héllo wörld ✓ 😀\u200b", "def f(x):\n\treturn x  # ✓", "<unk><s><0x41>\ufeff"]


def stdlib_files(*names):
  return [os.path.join(STDLIB, name) for name in names]


def read(path):
  with open(path, encoding="utf-8", newline="") as f:
    return f.read()


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory):
  """A small SentencePiece BPE model trained on three standard library modules."""
  path = tmp_path_factory.mktemp("spm") / "small.model"
  return tokenizers.train_sentencepiece(str(path), 400, files=stdlib_files("queue.py", "operator.py",
                                                                           "heapq.py"))


def write_tiktoken(path, merges=(b"  ", b"de", b"def", b"    ", b"re", b"ret", b"return")):
  tokens = [bytes([b]) for b in range(256)] + list(merges)
  path.write_bytes(b"".join(base64.b64encode(t) + b" %d\n" % i for i, t in enumerate(tokens)))
  return str(path)


# ---------------------------------------------------------------- round trips and byte counts

def test_bytes_tokenizer_is_the_utf8_bytes():
  tok = tokenizers.build_tokenizer()
  text = "héllo ✓\n"
  assert tok.encode(text) == list(text.encode("utf-8"))
  assert tok.decode(tok.encode(text)) == text
  assert tok.vocab_size == 256 and tok.byte_lengths.tolist() == [1] * 256
  assert tok.encode_bytes(b"\xff\x00a", "f").tolist() == [255, 0, 97]  # any bytes, UTF-8 or not
  assert tok.spec == {"kind": "bytes", "vocab_size": 256}


def test_sentencepiece_round_trips_source_code_exactly(sp_model):
  tok = tokenizers.load("sentencepiece", sp_model)
  assert tok.vocab_size == 400 and tok.model_type == "bpe"
  texts = [read(p) for p in stdlib_files("heapq.py", "ast.py", "tokenize.py", "queue.py")] + EDGE_TEXTS
  for text in texts:
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert int(tok.byte_lengths[ids].sum()) == len(text.encode("utf-8"))
  # Subwords: the training text takes fewer tokens than bytes.
  assert len(tok.encode(texts[0])) < 0.7 * len(texts[0].encode("utf-8"))


def test_sentencepiece_encodes_long_text_like_short_pieces(sp_model, monkeypatch):
  tok = tokenizers.load("sentencepiece", sp_model)
  text = read(stdlib_files("textwrap.py")[0])
  whole = tok.encode(text)
  monkeypatch.setattr(tokenizers, "ENCODE_CHUNK_CHARS", 100)  # many chunks, cut after newlines
  assert tok.encode(text) == whole


def test_tiktoken_file_with_named_and_custom_patterns(tmp_path):
  path = write_tiktoken(tmp_path / "small.tiktoken")
  tok = tokenizers.load("tiktoken", path, "cl100k")
  text = "def f():\n    return 1  é \u2581\t\n"
  ids = tok.encode(text)
  assert tok.decode(ids) == text and len(ids) < len(text.encode("utf-8"))
  assert int(tok.byte_lengths[ids].sum()) == len(text.encode("utf-8"))
  assert tok.vocab_size == 263 and tok.byte_lengths[262] == len(b"return")
  custom = tokenizers.load("tiktoken", path, r"regex:\S+|\s+")
  assert custom.decode(custom.encode(text)) == text
  assert custom.encode_bytes(text.encode(), "a.txt").tolist() == custom.encode(text)
  with pytest.raises(UserError, match="does not match all of a.txt"):
    tokenizers.load("tiktoken", path, "regex:[a-z]+").encode_bytes(text.encode(), "a.txt")
  assert custom.fingerprint != tok.fingerprint  # the pattern is part of the tokenizer


def test_patterns_are_tiktokens_own(monkeypatch):
  from tiktoken_ext import openai_public
  # Building an encoding's definition would load its BPE file: hand it an empty one instead.
  monkeypatch.setattr(openai_public, "load_tiktoken_bpe", lambda *a, **k: {b"a": 0})
  monkeypatch.setattr(openai_public, "data_gym_to_mergeable_bpe_ranks", lambda *a, **k: {b"a": 0})
  for name, function in [("gpt2", openai_public.gpt2), ("cl100k", openai_public.cl100k_base),
                         ("o200k", openai_public.o200k_base)]:
    assert tokenizers.PATTERNS[name] == function()["pat_str"], name


# ---------------------------------------------------------------- training

def test_sentencepiece_training_is_deterministic(tmp_path):
  files = stdlib_files("contextlib.py", "queue.py")
  for model_type in tokenizers.MODEL_TYPES:
    a = tokenizers.train_sentencepiece(str(tmp_path / f"a_{model_type}.model"), 400, files=files,
                                       model_type=model_type, max_sentences=300)
    b = tokenizers.train_sentencepiece(str(tmp_path / "sub" / f"b_{model_type}.model"), 400,
                                       files=files, model_type=model_type, max_sentences=300)
    assert open(a, "rb").read() == open(b, "rb").read(), model_type
  # The sampled lines (300 of about 1000) follow the seed.
  c = tokenizers.train_sentencepiece(str(tmp_path / "c.model"), 400, files=files, model_type="unigram",
                                     max_sentences=300, seed=1)
  assert open(c, "rb").read() != open(a, "rb").read()
  assert sorted(os.listdir(tmp_path)) == sorted(["a_bpe.model", "a_unigram.model", "c.model", "sub"])


def test_sampled_lines_are_uniform_and_follow_the_seed():
  lines = [str(i) for i in range(1000)] + ["", "x" * (tokenizers.MAX_LINE_BYTES + 1)]
  assert tokenizers.sample_lines(iter(lines), 2000, 0) == lines[:1000]  # all usable lines, in order
  sample = tokenizers.sample_lines(iter(lines), 100, 0)
  assert sample == tokenizers.sample_lines(iter(lines), 100, 0)
  assert sample != tokenizers.sample_lines(iter(lines), 100, 1)
  assert len(set(sample)) == 100 and set(sample) <= set(lines[:1000])
  assert 350 < np.mean([int(line) for line in sample]) < 650  # not the first lines: the whole corpus


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
  def killed(fd):
    raise KeyboardInterrupt
  monkeypatch.setattr(os, "fsync", killed)
  with pytest.raises(KeyboardInterrupt):
    tokenizers.write_atomically(str(tmp_path / "x.model"), b"model bytes")
  assert os.listdir(tmp_path) == []


def test_unwritable_path_and_unknown_model_type(tmp_path):
  (tmp_path / "file").write_text("not a folder")
  with pytest.raises(UserError, match="cannot write tokenizer file"):
    tokenizers.write_atomically(str(tmp_path / "file" / "x.model"), b"model bytes")
  with pytest.raises(UserError, match="model type 'word' is unknown; choose bpe or unigram"):
    tokenizers.train_sentencepiece(str(tmp_path / "x.model"), 400, texts=["a b"], model_type="word")


def test_build_tokenizer_trains_once_then_loads(tmp_path, capsys, monkeypatch):
  path = str(tmp_path / "tok" / "code.model")
  files = stdlib_files("queue.py")
  tok = tokenizers.build_tokenizer("sentencepiece", path, vocab_size=400, files=files)
  assert tok.vocab_size == 400 and os.path.isfile(path)
  note = capsys.readouterr().err
  assert note.startswith("note: training a SentencePiece bpe tokenizer") and path in note
  from_text = tokenizers.build_tokenizer("sentencepiece", str(tmp_path / "text.model"), vocab_size=400,
                                         texts=[read(files[0])])
  assert from_text.fingerprint == tok.fingerprint  # the same text, from a file or a string
  monkeypatch.setattr(tokenizers, "train_sentencepiece", None)  # a second training would fail
  assert tokenizers.build_tokenizer("sentencepiece", path, vocab_size=400, files=files).fingerprint == (
      tok.fingerprint)
  assert tokenizers.build_tokenizer("sentencepiece", path).vocab_size == 400
  with pytest.raises(UserError, match="has 400 tokens, not data.vocab_size=500"):
    tokenizers.build_tokenizer("sentencepiece", path, vocab_size=500, files=files)


# ---------------------------------------------------------------- identity

def test_spec_identifies_the_file_not_its_path(tmp_path, sp_model):
  tok = tokenizers.load("sentencepiece", sp_model)
  assert tok.spec["sha256"] == hashlib.sha256(open(sp_model, "rb").read()).hexdigest()
  moved = shutil.copy(sp_model, tmp_path / "moved.model")
  assert tokenizers.load("sentencepiece", str(moved)).fingerprint == tok.fingerprint
  tokenizers.check_same(tok, tokenizers.load("sentencepiece", str(moved)).spec, "data")
  assert tokenizers.from_spec(tok.spec).fingerprint == tok.fingerprint
  with pytest.raises(UserError, match="was made with tokenizer bytes"):
    tokenizers.check_same(tok, tokenizers.BytesTokenizer().spec, "the prepared data")
  other = tokenizers.train_sentencepiece(str(tmp_path / "other.model"), 400,
                                         files=stdlib_files("queue.py"))
  shutil.copy(other, moved)  # the recorded file changed under the run
  with pytest.raises(UserError, match="moved.model is not the one recorded"):
    tokenizers.from_spec(dict(tok.spec, path=str(moved)))


# ---------------------------------------------------------------- errors

def bad_file(tmp_path, sp_model, kind):
  data = open(sp_model, "rb").read()
  contents = {"empty": b"", "random": np.random.default_rng(0).bytes(2000), "truncated": data[:len(data) // 2],
              "tiktoken_line": b"QQ== 0\nnot base64!! 1\n", "tiktoken_bytes": b"QQ== 0\n",
              "tiktoken_repeat": b"QQ== 0\nQg== 0\n"}[kind]
  path = tmp_path / f"{kind}.bin"
  path.write_bytes(contents)
  return str(path)


@pytest.mark.parametrize("kind,file_kind,pattern,message", [
    ("sentencepiece", "empty", "", "is empty; delete it and train"),
    ("sentencepiece", "random", "", "is not a SentencePiece model"),
    ("sentencepiece", "truncated", "", "is not a SentencePiece model"),
    ("tiktoken", "tiktoken_line", "gpt2", "line 2 is not '<base64 token> <rank>'"),
    ("tiktoken", "tiktoken_bytes", "gpt2", "lacks 255 of the 256 single-byte tokens"),
    ("tiktoken", "tiktoken_repeat", "gpt2", "line 2 repeats a token or rank"),
    ("tiktoken", "random", "cl100k_base", "is not a pattern; choose gpt2, cl100k, o200k"),
    ("tiktoken", "random", "", "needs data.tokenizer_pattern"),
    ("tiktoken", "random", "regex:(", "is not a valid regex"),
])
def test_bad_tokenizer_files_are_one_line_user_errors(tmp_path, sp_model, kind, file_kind, pattern, message):
  path = bad_file(tmp_path, sp_model, file_kind)
  if pattern == "regex:(":
    path = write_tiktoken(tmp_path / "ok.tiktoken")
  with pytest.raises(UserError, match=message) as error:
    tokenizers.load(kind, path, pattern)
  assert "\n" not in str(error.value)
  if "pattern" not in message and "regex" not in message:
    assert path in str(error.value)  # names the file


@pytest.mark.parametrize("kwargs,message", [
    (dict(kind="sentencepiece", path="/nonexistent/x.model"), "x.model does not exist; give"),
    (dict(kind="wordpiece"), "data.tokenizer='wordpiece' is not a tokenizer; choose bytes"),
    (dict(kind="bytes", path="x.model"), "data.tokenizer='bytes' reads no file"),
    (dict(kind="bytes", vocab_size=4096), "does not apply to data.tokenizer='bytes'"),
    (dict(kind="tiktoken"), "needs data.tokenizer_path"),
    (dict(kind="sentencepiece", path="/nonexistent/x.model", vocab_size=500), "no corpus to train"),
])
def test_bad_settings_are_user_errors(kwargs, message):
  with pytest.raises(UserError, match=message):
    tokenizers.build_tokenizer(**kwargs)


@pytest.mark.parametrize("text,vocab_size,message", [
    (("".join(chr(c) for c in range(0x4E00, 0x4E80)) + "\n") * 20, 300, "too small for this corpus: SentencePiece needs"),
    ("the quick brown fox\n" * 20, 5000, "too large for this corpus: at most"),
    ("\n\n", 300, "holds no text"),
    ("abc", 256, "too small for SentencePiece"),
])
def test_vocab_that_does_not_fit_the_corpus(tmp_path, text, vocab_size, message):
  with pytest.raises(UserError, match=message):
    tokenizers.train_sentencepiece(str(tmp_path / "x.model"), vocab_size, texts=[text])
  assert not os.path.exists(tmp_path / "x.model")


def test_text_that_is_not_utf8_is_refused(tmp_path, sp_model):
  latin1 = tmp_path / "latin1.txt"
  latin1.write_bytes("café\n".encode("latin-1"))
  with pytest.raises(UserError, match="latin1.txt is not UTF-8 text"):
    tokenizers.train_sentencepiece(str(tmp_path / "x.model"), 400, files=[str(latin1)])
  with pytest.raises(UserError, match="latin1.txt is not UTF-8 text"):
    list(tokenizers.encode_files(tokenizers.load("sentencepiece", sp_model), [str(latin1)]))


def test_model_without_byte_fallback_refuses_unknown_text(tmp_path):
  import sentencepiece as spm
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(sentence_iterator=iter(["abc abd abe"] * 10), model_writer=model,
                                 vocab_size=10, hard_vocab_limit=False, minloglevel=2)
  path = tmp_path / "nofallback.model"
  path.write_bytes(model.getvalue())
  tok = tokenizers.load("sentencepiece", str(path))
  assert tok.encode_bytes(b"abc", "ok.txt").size > 0
  with pytest.raises(UserError, match="new.txt has text that tokenizer .* cannot encode"):
    tok.encode_bytes("abc ✓".encode(), "new.txt")


# ---------------------------------------------------------------- packing

def test_windows_shift_by_one_and_count_target_bytes():
  ids = np.arange(20, dtype=np.uint16)
  lengths = np.arange(20) % 3  # token i stands for i % 3 bytes
  windows, target_bytes = tokenizers.pack_windows(ids, 4, lengths)
  assert windows.shape == (4, 5) and windows[1].tolist() == [4, 5, 6, 7, 8]
  assert target_bytes.tolist() == [int(lengths[w[1:]].sum()) for w in windows]
  windows, target_bytes = tokenizers.pack_windows(ids, 4, lengths, stride=2)
  assert windows.shape == (8, 5) and windows[1, 0] == 2
  assert target_bytes.tolist() == [int(lengths[w[1:]].sum()) for w in windows]
  assert tokenizers.pack_windows(ids[:4], 4, lengths)[0].shape == (0, 5)


def test_target_bytes_of_a_packing_add_up_to_its_text(sp_model):
  tok = tokenizers.load("sentencepiece", sp_model)
  text = read(stdlib_files("textwrap.py")[0])
  ids = np.asarray(tok.encode(text))
  seq_len = 64
  windows, target_bytes = tokenizers.pack_windows(ids, seq_len, tok.byte_lengths)
  covered = ids[1:len(windows) * seq_len + 1]  # every target, once
  assert np.array_equal(windows[:, 1:].reshape(-1), covered)
  assert int(target_bytes.sum()) == len(tok.decode(covered).encode("utf-8"))
  # The first token, the targets and the tail after the last window are the whole text.
  assert tok.decode(ids[:1]) + tok.decode(covered) + tok.decode(ids[len(covered) + 1:]) == text


@pytest.mark.parametrize("stride", [0, 3, 9, 13])
def test_streamed_windows_equal_packed_windows(stride):
  rng = np.random.default_rng(stride)
  ids = rng.integers(0, 50, 300).astype(np.uint16)
  lengths = rng.integers(0, 4, 50)
  cuts = np.sort(rng.choice(np.arange(1, 300), 25, replace=False))
  blocks = list(tokenizers.iter_windows(np.split(ids, cuts), 8, lengths, stride))
  windows, target_bytes = tokenizers.pack_windows(ids, 8, lengths, stride)
  assert np.array_equal(np.concatenate([w for w, _ in blocks]), windows)
  assert np.array_equal(np.concatenate([b for _, b in blocks]), target_bytes)


def test_token_dtype_holds_every_id():
  assert [tokenizers.token_dtype(v) for v in (256, 257, 65536, 100_277)] == [
      np.uint8, np.uint16, np.uint16, np.uint32]
