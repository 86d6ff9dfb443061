"""Training needs no TensorFlow: with `import tensorflow` failing (as where it is not
installed), the real entry point prepares and trains on an image folder (one file in it not an
image), text files, the MNIST IDX files and digits, streamed by worker processes, and says so
quietly: one line per dataset naming what it prepares and where, a progress line, a warning
naming the bad file, nothing from absl, tfds or TensorFlow."""

import os
import re
import subprocess
import sys

import records_testlib as lib

# Every interpreter of the run (the test's and the input workers it spawns) starts with
# TensorFlow unimportable.
SITECUSTOMIZE = "import sys\nsys.modules['tensorflow'] = None\n"

SCRIPT = """
import sys
from lepton_jax import main
data_dir, images, text, mnist = sys.argv[1:]
common = ["--config.data.data_dir=" + data_dir, "--config.num_train_steps=4",
          "--config.log_every_steps=2", "--config.eval_every_steps=4",
          "--config.checkpoint_every_steps=4", "--config.optimizer.warmup_steps=1"]
runs = {
    "image_folder": ["configs/imagefolder_cnn.py:" + images, "--config.data.image_size=8,8",
                     "--config.batch_size=4", "--config.data.validation_fraction=0.25",
                     "--config.data.on_device_max_mb=0", "--config.data.workers=1"],
    "text_files": ["configs/lm_transformer.py:" + text, "--config.data.seq_len=8",
                   "--config.model.max_len=8", "--config.model.width=16", "--config.model.depth=1",
                   "--config.batch_size=4", "--config.data.validation_fraction=0.2"],
    "digits": ["configs/quickstart.py", "--config.model.conv_features=(4,)",
               "--config.model.pool=(True,)", "--config.model.hidden_sizes=(8,)"],
}
if mnist:
  runs["mnist"] = ["configs/mnist_cnn.py", "--config.data.manual_dir=" + mnist,
                   "--config.model.conv_features=(4,)", "--config.model.hidden_sizes=(8,)"]
for name, args in runs.items():
  print("run", name, flush=True)
  config, rest = args[0], args[1:]
  code = main.main(["--config", config, "--workdir", data_dir + "/../work_" + name] + common + rest)
  print("trained", name, code, flush=True)
assert sys.modules["tensorflow"] is None
assert "tensorflow_datasets" not in sys.modules
print("ok")
"""


def test_training_on_every_local_format_needs_no_tensorflow_and_is_quiet(tmp_path):
  (tmp_path / "site").mkdir()
  (tmp_path / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
  lib.write_images(tmp_path / "images", per_class=8, size=(8, 8))
  (tmp_path / "images" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a JPEG")
  (tmp_path / "a.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 20)
  mnist = lib.MNIST_DIR if os.path.isdir(lib.MNIST_DIR) else ""
  argv = [str(tmp_path / "data"), str(tmp_path / "images"), str(tmp_path / "a.txt"), mnist]
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), lib.REPO]))
  env.pop("JAX_NUM_CPU_DEVICES", None)
  result = subprocess.run([sys.executable, "-c", SCRIPT, *argv], env=env, capture_output=True,
                          text=True, timeout=540, cwd=lib.REPO)
  out = result.stdout + result.stderr
  assert result.stdout.splitlines()[-1:] == ["ok"], out[-5000:]
  names = ["image_folder", "text_files", "digits"] + (["mnist"] if mnist else [])
  for name in names:
    assert f"trained {name} 0" in result.stdout
  # Quiet: one line per preparation naming what and where; no absl, tfds or TensorFlow noise.
  preparing = [line for line in result.stderr.splitlines() if line.startswith("preparing ")]
  assert len(preparing) == len(names), result.stderr
  assert all(f" into {tmp_path / 'data'}" in line for line in preparing)
  assert "\x1b[" not in out  # no terminal control codes in a log
  for noise in ("absl", "Downloading and preparing", "tensorflow", "oneDNN", "leaked"):
    assert noise.lower() not in result.stderr.lower(), (noise, result.stderr)
  assert not [line for line in result.stderr.splitlines() if line.startswith(("W", "I0", "E0"))]
  # The one warning: the file that is not an image, by name (training goes on without it).
  warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
  assert len(warnings) == 1 and "skipped 1 unreadable files: cat/broken.jpg" in warnings[0]
  assert re.search(r"files/s, ETA|examples/s, ETA|windows/s, ETA", result.stderr)
