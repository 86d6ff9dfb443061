"""GPT-2 small (12 layers, width 768, 12 heads, MLP 3,072, 1,024 tokens, batch 32) as a byte-level
language model on local text (default: Python's standard library source).

    python -m lepton_jax.main --config configs/gpt2_small.py --workdir /tmp/lepton/gpt2_small
    python -m lepton_jax.bench --config configs/gpt2_small.py --config.data.name=synthetic
    python -m lepton_jax.main --config configs/gpt2_small.py:tiny --workdir /tmp/lepton/gpt2_tiny

`:tiny` keeps the same code path (scanned blocks, the same attention, sharding rules and optimizer)
at a size that trains on a CPU in minutes. Compute is bfloat16 on GPUs and TPUs (float32 on CPU),
parameters float32; attention='auto' runs cuDNN flash attention on NVIDIA GPUs, the Pallas splash
kernel on TPUs and XLA on CPUs. The sharding rules spread the model over the data, fsdp and model
(tensor) mesh axes; e.g. on 8 devices:
`--config.mesh.data=2 --config.mesh.fsdp=2 --config.mesh.model=2`.

With bytes as tokens the model has 86,039,040 parameters (the shape of the H200 comparison in
benchmarks/README.md, "Language models"). No accelerator was lent to the session that wrote this
config: its GPU speed is not measured here; the CPU figures of `:tiny` are in that section.
"""

from lepton_jax.config_defaults import base_config
from lepton_jax.models.transformer_lm import SHARDING_RULES


def get_config(arg=None):
  tiny = arg == "tiny"
  if arg not in (None, "", "tiny"):
    raise ValueError(f"argument {arg!r}: use configs/gpt2_small.py or configs/gpt2_small.py:tiny")
  config = base_config()
  config.experiment = "language_model"
  config.metrics = ("loss", "bits_per_byte", "accuracy")
  config.eval.split = "validation"
  config.eval.best_metric = "bits_per_byte"
  config.eval.best_mode = "min"

  config.data.name = "text_files"
  config.data.files = "{stdlib}/*.py"  # glob of the text files ({stdlib}: Python's standard library)
  config.data.seq_len = 64 if tiny else 1024  # tokens per example
  config.data.stride = 0  # a window every N tokens; 0: seq_len
  config.data.validation_fraction = 0.02  # the last 2% of the text is the validation split
  config.data.tokenizer = "bytes"  # bytes, sentencepiece or tiktoken (data/tokenizers.py)
  config.data.tokenizer_path = ""  # its .model / .tiktoken file; sentencepiece: trained there if missing
  config.data.vocab_size = 0  # sentencepiece: the vocabulary to train (0: the file's)
  config.data.tokenizer_model_type = "bpe"  # sentencepiece training: bpe or unigram
  config.data.tokenizer_pattern = ""  # tiktoken: gpt2, cl100k, o200k or regex:<pattern>
  config.data.preprocess = ()  # token ids go to the model as they are

  config.model.name = "transformer_lm"
  config.model.width = 64 if tiny else 768
  config.model.depth = 2 if tiny else 12
  config.model.num_heads = 4 if tiny else 12
  config.model.mlp_dim = 256 if tiny else 3072
  config.model.max_len = config.data.seq_len
  config.model.positions = "learned"
  config.model.tie_embeddings = True
  config.model.attention = "auto"  # cuDNN on NVIDIA GPUs, Pallas splash on TPUs, XLA elsewhere
  config.model.scan_layers = True  # compile time independent of depth
  config.model.remat = "none"  # 'dots' or 'full' trade compute for activation memory
  config.dtype = "auto"
  config.param_dtype = "float32"
  config.sharding.rules = SHARDING_RULES

  config.batch_size = 8 if tiny else 32
  config.num_train_steps = 300 if tiny else 20_000
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 3e-3 if tiny else 6e-4
  config.optimizer.schedule = "warmup_cosine"
  config.optimizer.warmup_steps = 30 if tiny else 700
  config.optimizer.end_learning_rate = 6e-5
  config.optimizer.b2 = 0.95
  config.optimizer.weight_decay = 0.1
  config.optimizer.grad_clip_norm = 1.0
  config.log_every_steps = 50 if tiny else 100
  config.eval_every_steps = 0 if tiny else 2000
  config.checkpoint_every_steps = 0 if tiny else 2000
  return config
