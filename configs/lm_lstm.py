"""Byte-level LSTM language model on local text files (default: Python's own standard library source).

    python -m lepton_jax.main --config configs/lm_lstm.py --workdir /tmp/lepton/lm_lstm

`configs/lm_lstm.py:gru` uses a GRU instead. Another text: `--config.data.files='~/corpus/*.txt'`
(a glob). Same data, experiment and metrics as configs/lm_transformer.py; subword tokens
as there (`--config.data.tokenizer=sentencepiece --config.data.tokenizer_path=... --config.data.vocab_size=4096`).

Result: unmeasured.
"""

from lepton_jax.config_defaults import base_config


def get_config(arg=None):
  cell = (arg or "lstm").strip().lower()
  if cell not in ("lstm", "gru"):
    raise ValueError(f"config argument must be lstm or gru, not {arg!r}")
  config = base_config()
  config.experiment = "language_model"
  config.metrics = ("loss", "bits_per_byte", "accuracy")
  config.eval.split = "validation"
  config.eval.best_metric = "bits_per_byte"
  config.eval.best_mode = "min"

  config.data.name = "text_files"
  config.data.files = "{stdlib}/*.py"  # glob of the text files ({stdlib}: Python's standard library)
  config.data.seq_len = 128  # tokens per example
  config.data.stride = 0  # a window every N tokens; 0: seq_len
  config.data.validation_fraction = 0.02  # the last 2% of the bytes (cut at a newline) are validation
  config.data.tokenizer = "bytes"  # bytes, sentencepiece or tiktoken (data/tokenizers.py)
  config.data.tokenizer_path = ""  # its .model / .tiktoken file; sentencepiece: trained there if missing
  config.data.vocab_size = 0  # sentencepiece: the vocabulary to train (0: the file's)
  config.data.tokenizer_model_type = "bpe"  # sentencepiece training: bpe or unigram
  config.data.tokenizer_pattern = ""  # tiktoken: gpt2, cl100k, o200k or regex:<pattern>
  config.data.preprocess = ()

  config.model.name = cell
  config.model.head = "lm"
  config.model.hidden_size = 256
  config.model.num_layers = 2
  config.model.embed_dim = 64
  config.model.dropout_rate = 0.0

  config.batch_size = 32
  config.num_train_steps = 3000
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 2e-3
  config.optimizer.schedule = "warmup_cosine"
  config.optimizer.warmup_steps = 100
  config.optimizer.grad_clip_norm = 1.0
  config.log_every_steps = 50
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500
  return config
