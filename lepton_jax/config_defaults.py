"""The keys every config has, with their defaults. Config files start here:

    from lepton_jax.config_defaults import base_config

    def get_config(arg=None):
      config = base_config()
      config.model.name = "cnn"
      ...
      return config

docs/config_reference.md is generated from this file and the configs in
configs/ (python -m lepton_jax.docgen), so every key's default and meaning
below is the documentation. Keep the comment after each key: it is its
description in the reference.
"""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.experiment = "classification"  # registered experiment: how outputs become loss and metrics
  c.seed = 0  # seeds parameter init, dropout and the data order
  c.batch_size = 128  # global batch size, over all devices and processes
  c.num_train_steps = -1  # training steps; -1: derived from num_epochs
  c.num_epochs = 1.0  # epochs of the training split when num_train_steps is -1
  c.log_every_steps = 50  # training metrics and the progress line every N steps
  c.eval_every_steps = -1  # evaluate every N steps and at the end; -1: every epoch; 0: at the end only
  c.checkpoint_every_steps = -1  # save every N steps and at the end; -1: every epoch; 0: at the end only
  c.dtype = "float32"  # compute dtype: float32, bfloat16, or auto (bfloat16 on GPUs and TPUs, float32 on CPU)
  c.param_dtype = "float32"  # parameter (and optimizer state) dtype
  c.metrics = ("loss", "accuracy", "precision", "recall", "f1")  # eval metrics (registered names)
  # Train steps per dispatch: one jitted program runs this many steps where nothing is due in
  # between (small models on accelerators, whose steps are shorter than the host's work).
  c.steps_per_dispatch = 0  # 0: auto (1 on CPU; on accelerators from the step's FLOPs); N: N
  c.ema_decay = 0.0  # evaluate an exponential moving average of the params with this decay; 0: off
  c.init_from = ""  # start from this checkpoint (a workdir or a checkpoint step dir); '' = fresh
  c.init_from_params = ".*"  # regex on parameter paths: which parameters init_from loads
  # Modules every entry point imports before it looks names up in the registry (your own models,
  # datasets, experiments); recorded in the workdir's config.json, so predict/export/eval find them.
  c.imports = ()  # module names, e.g. ('my_extensions',); their directory must be on PYTHONPATH

  c.perf = ml_collections.ConfigDict()
  c.perf.peak_flops = 0.0  # peak FLOP/s of one device for MFU; 0: known table, or measured on CPU
  c.perf.profile_start_step = -1  # capture a jax.profiler trace from this step; -1: off
  c.perf.profile_num_steps = 5  # steps in the trace (WORKDIR/profile, for TensorBoard/Perfetto)

  c.model = ml_collections.ConfigDict()
  c.model.name = "mlp"  # registered model; the other keys of this section are its arguments

  c.data = ml_collections.ConfigDict()
  c.data.name = "digits"  # registered dataset (a dataset's own keys: docs/offline_data.md)
  # Prepared datasets live here, one folder each (ArrayRecord files); tfds catalog datasets too.
  c.data.data_dir = ""  # '' = $TFDS_DATA_DIR or ~/tensorflow_datasets; a local or mounted path
  c.data.manual_dir = ""  # folder with the original files (image folder, MNIST/CIFAR files, text)
  c.data.train_split = "train"  # split to train on (slices like 'train[:90%]' work)
  c.data.num_shards = 0  # data shards (fix the data order); 0: one per process
  c.data.preprocess = ("to_float",)  # device-side ops for every split (and predict)
  c.data.augment = ()  # device-side random ops for training only
  # Streamed splits are read, decoded and batched by worker processes, each holding `prefetch`
  # batches ahead: host memory stays at a few batches per worker, whatever the dataset's size.
  c.data.workers = -1  # input worker processes; -1: half the cores (none on 2) when streaming; 0: in-process
  c.data.prefetch = 2  # batches prepared ahead, per worker and on the devices
  # A prepared split whose files take at most this much is read into memory once per process, as
  # stored (compressed images stay compressed): reads at random then cost no file access.
  c.data.cache_mb = 256  # record cache per split and process (MiB); 0: always read the files
  # Single-process runs keep a train split up to this size on every device and gather batches
  # there: no per-step host assembly or copy. Bigger splits (and all, at 0) stream.
  c.data.on_device_max_mb = 256  # decoded train split size limit (MiB); 0: always stream

  c.eval = ml_collections.ConfigDict()
  c.eval.split = "test"  # split to evaluate on
  c.eval.batch_size = 0  # eval global batch size; 0: batch_size
  c.eval.best_metric = "accuracy"  # metric that picks the best checkpoint
  c.eval.best_mode = "max"  # max or min: which direction is better for best_metric

  # Checkpoints go to WORKDIR/checkpoints every checkpoint_every_steps, at the end and on
  # SIGTERM/SIGINT; re-running the same command resumes from the newest complete one.
  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.keep_last = 3  # keep the newest N checkpoints (at least 1)
  c.checkpoint.keep_best = 1  # also keep the N best by eval.best_metric/eval.best_mode; 0: none
  c.checkpoint.async_save = True  # write checkpoints in the background while training goes on
  c.checkpoint.compress = False  # zstd-compress the arrays (float weights barely shrink; costs CPU)
  # On the CPU backend the writer and the train step share the cores: a low-priority writer
  # (nice 10) yields them to training but keeps a share when other programs keep every core busy;
  # 'idle' (SCHED_IDLE) uses only free cycles and then waits for those programs.
  c.checkpoint.writer_priority = "auto"  # low, idle, normal, or auto: low on the CPU backend

  c.loss = ml_collections.ConfigDict()
  c.loss.name = "softmax_cross_entropy"  # registered loss
  c.loss.label_smoothing = 0.0  # label smoothing for cross-entropy losses

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"  # registered optimizer: sgd, momentum, nesterov, adam, adamw
  c.optimizer.learning_rate = 1e-3  # peak learning rate
  c.optimizer.schedule = "constant"  # registered schedule: constant, warmup_cosine, step_decay
  c.optimizer.warmup_steps = 0  # linear warmup steps
  c.optimizer.end_learning_rate = 0.0  # final learning rate of warmup_cosine
  c.optimizer.decay_boundaries = (0.5, 0.75)  # step_decay: fractions of training (or steps if >= 1)
  c.optimizer.decay_factor = 0.1  # step_decay: multiplier at each boundary
  c.optimizer.momentum = 0.9  # momentum / nesterov
  c.optimizer.b1 = 0.9  # adam/adamw first-moment decay
  c.optimizer.b2 = 0.999  # adam/adamw second-moment decay
  c.optimizer.eps = 1e-8  # adam/adamw epsilon
  c.optimizer.weight_decay = 0.0  # decoupled weight decay on kernels (not biases/norms)
  c.optimizer.grad_clip_norm = 0.0  # clip gradients to this global norm; 0: off
  c.optimizer.accumulation_steps = 1  # micro-batches per step (gradient accumulation)

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # data-parallel axis size; -1: the devices left over
  c.mesh.fsdp = 1  # fully-sharded data-parallel axis size (params sharded, batch split)
  c.mesh.model = 1  # tensor-parallel axis size

  c.sharding = ml_collections.ConfigDict()
  # (regex on the parameter path 'a/b/kernel', spec): the first rule whose regex matches wins. A spec
  # names one mesh axis (or '' for none) per dimension, comma-separated, e.g. 'fsdp,model';
  # 'replicated' copies the array to every device; 'fsdp_auto' shards its largest dimension
  # that divides evenly over the fsdp axis (replicated when mesh.fsdp is 1).
  c.sharding.rules = ((".*", "fsdp_auto"),)  # parameter-path regex -> partition spec, first match wins
  c.sharding.strict = False  # error when a parameter matches no rule (else: replicate it)
  return c
