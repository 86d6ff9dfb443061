"""A Llama-style decoder (RMSNorm, SwiGLU, rotary positions, grouped-query attention, untied head)
as a byte-level language model on local text (default: Python's standard library source).

    python -m lepton_jax.main --config configs/llama.py:tiny --workdir /tmp/lepton/llama_tiny
    python -m lepton_jax.bench --config configs/llama.py:1b --config.data.name=synthetic
    python -m lepton_jax.main --config configs/llama.py:1b --workdir gs://BUCKET/llama_1b \
        --config.mesh.data=1 --config.mesh.fsdp=-1     # a pod slice: parameters sharded (FSDP)

`:1b` is the Llama-3.2-1B shape (16 layers, width 2,048, 32 heads of which 8 key/value heads,
MLP 8,192, 2,048 tokens) with rematerialized blocks; `:tiny` (2 layers, width 64) keeps the same
code path at a size that trains on a CPU in minutes. Compute is bfloat16 on GPUs and TPUs
(float32 on CPU), parameters float32.

Measured: see benchmarks/README.md ("Language models"); no accelerator was lent to the session
that wrote this config, so `:1b` has not been run here.
"""

from lepton_jax.config_defaults import base_config
from lepton_jax.models.transformer_lm import SHARDING_RULES

SHAPES = {
    "1b": dict(width=2048, depth=16, num_heads=32, num_kv_heads=8, mlp_dim=8192, max_len=2048,
               rope_base=500_000.0, remat="dots"),
    "tiny": dict(width=64, depth=2, num_heads=4, num_kv_heads=2, mlp_dim=192, max_len=128,
                 rope_base=10_000.0, remat="none"),
}


def get_config(arg=None):
  size = arg or "tiny"
  if size not in SHAPES:
    raise ValueError(f"argument {arg!r}: use configs/llama.py:{' or :'.join(SHAPES)}")
  shape = SHAPES[size]
  config = base_config()
  config.experiment = "language_model"
  config.metrics = ("loss", "bits_per_byte", "accuracy")
  config.eval.split = "validation"
  config.eval.best_metric = "bits_per_byte"
  config.eval.best_mode = "min"

  config.data.name = "text_files"
  config.data.files = "{stdlib}/*.py"  # glob of the text files ({stdlib}: Python's standard library)
  config.data.seq_len = shape["max_len"]  # tokens per example
  config.data.stride = 0  # a window every N tokens; 0: seq_len
  config.data.validation_fraction = 0.02  # the last 2% of the text is the validation split
  config.data.tokenizer = "bytes"  # bytes, sentencepiece or tiktoken (data/tokenizers.py)
  config.data.tokenizer_path = ""  # its .model / .tiktoken file; sentencepiece: trained there if missing
  config.data.vocab_size = 0  # sentencepiece: the vocabulary to train (0: the file's)
  config.data.tokenizer_model_type = "bpe"  # sentencepiece training: bpe or unigram
  config.data.tokenizer_pattern = ""  # tiktoken: gpt2, cl100k, o200k or regex:<pattern>
  config.data.preprocess = ()  # token ids go to the model as they are

  config.model.name = "llama"
  config.model.update(shape)
  config.model.attention = "auto"  # cuDNN on NVIDIA GPUs, Pallas splash on TPUs, XLA elsewhere
  config.model.scan_layers = True
  config.dtype = "auto"
  config.param_dtype = "float32"
  config.sharding.rules = SHARDING_RULES

  tiny = size == "tiny"
  config.batch_size = 8 if tiny else 64
  config.num_train_steps = 300 if tiny else 50_000
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 3e-3 if tiny else 3e-4
  config.optimizer.schedule = "warmup_cosine"
  config.optimizer.warmup_steps = 30 if tiny else 2000
  config.optimizer.end_learning_rate = 3e-5
  config.optimizer.b2 = 0.95
  config.optimizer.weight_decay = 0.1
  config.optimizer.grad_clip_norm = 1.0
  config.log_every_steps = 50 if tiny else 100
  config.eval_every_steps = 0 if tiny else 5000
  config.checkpoint_every_steps = 0 if tiny else 2000
  return config
