"""Byte-level Transformer language model on local text files (default: Python's own standard library source).

    python -m lepton_jax.main --config configs/lm_transformer.py --workdir /tmp/lepton/lm_transformer

Another text: `--config configs/lm_transformer.py:'~/corpus/*.txt'` or
`--config.data.files='~/corpus/**/*.txt'` (a glob; any UTF-8 text, or any bytes). Subword
tokens: `--config.data.tokenizer=sentencepiece --config.data.tokenizer_path=~/lm/spm4k.model
--config.data.vocab_size=4096` trains a SentencePiece model on the train split the first time
(tiktoken files: data.tokenizer='tiktoken' with data.tokenizer_pattern); bits_per_byte then
divides by the bytes the target tokens stand for, so it compares across tokenizers.
The default, `{stdlib}/*.py`, is the top-level modules of the running Python's
standard library (sysconfig's 'stdlib' path; 164 files, 4.58 MB for CPython
3.12.1): text that every machine running lepton_jax has.

Measured (once, on the default text): validation 2.43 bits per byte (loss 1.687
nats, next-byte accuracy 55.7%) after the 800 steps; the whole command took 10 min
2 s wall-clock, data preparation (the earlier tfds build, and the split then at exactly
98% of the bytes, not at a newline), compilation and both evaluations included, on a
2-core AMD EPYC CPU VM shared with other jobs (0.5-1.0 s per step seen there).
The 0.45M-parameter model and the short schedule are sized for that: for more
compute, raise width/depth, seq_len and num_train_steps.
"""

from lepton_jax.config_defaults import base_config


def get_config(arg=None):
  config = base_config()
  config.experiment = "language_model"
  config.metrics = ("loss", "bits_per_byte", "accuracy")
  config.eval.split = "validation"
  config.eval.best_metric = "bits_per_byte"
  config.eval.best_mode = "min"

  config.data.name = "text_files"
  config.data.files = arg or "{stdlib}/*.py"  # glob of the text files ({stdlib}: Python's standard library)
  config.data.seq_len = 128  # tokens per example
  config.data.stride = 0  # a window every N tokens; 0: seq_len
  config.data.validation_fraction = 0.02  # the last 2% of the bytes (cut at a newline) are validation
  config.data.tokenizer = "bytes"  # bytes, sentencepiece or tiktoken (data/tokenizers.py)
  config.data.tokenizer_path = ""  # its .model / .tiktoken file; sentencepiece: trained there if missing
  config.data.vocab_size = 0  # sentencepiece: the vocabulary to train (0: the file's)
  config.data.tokenizer_model_type = "bpe"  # sentencepiece training: bpe or unigram
  config.data.tokenizer_pattern = ""  # tiktoken: gpt2, cl100k, o200k or regex:<pattern>
  config.data.preprocess = ()  # int32 tokens go to the model as they are

  config.model.name = "transformer_lm"
  config.model.width = 128
  config.model.depth = 2
  config.model.num_heads = 4
  config.model.mlp_dim = 512
  config.model.max_len = 128
  config.model.positions = "learned"
  config.model.dropout_rate = 0.0

  config.batch_size = 16
  config.num_train_steps = 800
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 3e-3
  config.optimizer.schedule = "warmup_cosine"
  config.optimizer.warmup_steps = 50
  config.optimizer.end_learning_rate = 1.5e-3  # a short run: stop halfway down the cosine
  config.optimizer.weight_decay = 0.01
  config.optimizer.grad_clip_norm = 1.0
  config.log_every_steps = 50
  config.eval_every_steps = 400
  config.checkpoint_every_steps = 400
  return config
