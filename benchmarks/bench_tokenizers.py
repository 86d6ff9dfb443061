"""Tokens per byte, training time and encode speed of SentencePiece BPE vs bytes.

    PYTHONPATH=. python benchmarks/bench_tokenizers.py [--files '{stdlib}/*.py']
        [--vocab_sizes 4096,8192] [--model_type bpe] [--max_sentences 1000000]

Trains one SentencePiece model per vocabulary size on the files (`tokenizers.
train_sentencepiece`, as `data.tokenizer='sentencepiece'` would), then encodes every
file with it (`Tokenizer.encode_bytes`, as data preparation would) and reports tokens per
byte, training seconds and encode MB/s (UTF-8 bytes in per second of wall-clock time, and
per second of the process's CPU time, which a busy machine changes less), plus
whether every file decodes back to itself and the byte counts add up. The model files are
written to a temporary folder and trained twice, to check that both are the same bytes.
"""

import argparse
import glob
import hashlib
import os
import sysconfig
import tempfile
import time

from lepton_jax.data import tokenizers


def read_files(pattern: str) -> list[tuple[str, bytes]]:
  pattern = os.path.expanduser(pattern.replace("{stdlib}", sysconfig.get_paths()["stdlib"]))
  paths = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
  out = []
  for path in paths:
    with open(path, "rb") as f:
      out.append((path, f.read()))
  return out


def measure(tokenizer, files) -> dict:
  total_bytes = sum(len(data) for _, data in files)
  start, cpu_start = time.perf_counter(), time.process_time()
  encoded = [tokenizer.encode_bytes(data, path) for path, data in files]
  seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
  tokens = sum(len(ids) for ids in encoded)
  exact = all(tokenizer.decode(ids).encode("utf-8") == data
              and int(tokenizer.byte_lengths[ids].sum()) == len(data)
              for ids, (_, data) in zip(encoded, files))
  return {"tokens": tokens, "tokens_per_byte": tokens / total_bytes,
          "encode_mb_s": total_bytes / seconds / 1e6,
          "encode_mb_cpu_s": total_bytes / max(cpu_seconds, 1e-9) / 1e6, "round_trip": exact}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--files", default="{stdlib}/*.py")
  parser.add_argument("--vocab_sizes", default="4096,8192")
  parser.add_argument("--model_type", default="bpe", choices=tokenizers.MODEL_TYPES)
  parser.add_argument("--max_sentences", type=int, default=1_000_000)
  args = parser.parse_args()
  files = read_files(args.files)
  total = sum(len(data) for _, data in files)
  print(f"{len(files)} files, {total:,} bytes ({args.files})")
  row = measure(tokenizers.BytesTokenizer(), files)
  print(f"bytes        tokens/byte {row['tokens_per_byte']:.3f}")
  paths = [path for path, _ in files]
  with tempfile.TemporaryDirectory() as folder:
    for vocab_size in [int(v) for v in args.vocab_sizes.split(",")]:
      digests, seconds = [], []
      for attempt in range(2):
        start = time.perf_counter()
        path = tokenizers.train_sentencepiece(
            os.path.join(folder, f"{vocab_size}_{attempt}.model"), vocab_size, files=paths,
            model_type=args.model_type, max_sentences=args.max_sentences)
        seconds.append(time.perf_counter() - start)
        with open(path, "rb") as f:
          digests.append(hashlib.sha256(f.read()).hexdigest())
      row = measure(tokenizers.load("sentencepiece", path), files)
      print(f"{args.model_type} {vocab_size:<6} tokens/byte {row['tokens_per_byte']:.3f}  "
            f"encode {row['encode_mb_s']:.2f} MB/s ({row['encode_mb_cpu_s']:.2f} per CPU second)  train {min(seconds):.1f} s (runs: "
            f"{', '.join(f'{s:.1f}' for s in seconds)})  identical files: {digests[0] == digests[1]}  "
            f"exact round trip and byte counts: {row['round_trip']}")


if __name__ == "__main__":
  main()
