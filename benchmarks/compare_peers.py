"""Side-by-side training speed of the seed MNIST CNN: lepton_jax vs Keras 3/TF vs PyTorch.

    PYTHONPATH=. /work/main/.venv/bin/python benchmarks/compare_peers.py [--rounds 3] [--steps 100]
        [--repeats 5] [--json PATH] [--keras-jit auto[,false,true]] [--torch-compile]
        [--lepton-python P] [--keras-python P] [--torch-python P] [--mnist-dir DIR]

Set-up (once; the PyTorch peer gets its own Python 3.11 venv, keeping torch out of the
project's; Keras 3 comes with TensorFlow 2.21 in the project's venv):

    python3 -m venv /work/peers-venv-torch            # python3 is 3.11
    /work/peers-venv-torch/bin/pip install torch==2.13.0 numpy   # 2.13.0+cpu from the local wheel
    ls /work/shared/data/mnist   # train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, ...

`--torch-compile` also needs a C++ compiler (g++) for torch.compile's CPU code.

Each program runs as its own subprocess with its own interpreter; a round runs each once, and
the order rotates from round to round (round 2 starts with the second program, ...), so a
drifting load falls on all of them. Per program the table gives the median and the range over
rounds of each run's figure, and lepton_jax's median over the program's median.

Same work everywhere: Conv 32 3x3 SAME relu -> max-pool 2x2 -> Dense 64 relu -> Dense 10
(402,442 parameters, checked from each program's own count), float32, softmax cross-entropy,
Adam(1e-3) constant, batch 128, MNIST's 60,000 training images held in memory (normalized
like configs/mnist_cnn.py), reshuffled every epoch. lepton_jax: configs/mnist_cnn.py through
`python -m lepton_jax.bench --only loop` (the real train loop: data on the device, prefetch,
logging) with its schedule set to the peers' constant 1e-3; it uses full batches only (468 a
epoch), the peers also take each epoch's partial last batch, as their users' default, and
every program counts the images it trained on.

Timing, the same in each program: one continuous training run of (repeats + 1) x steps
steps; the wall time is read every `steps` steps (after a synchronizing point: lepton_jax's
log fetches the step's metrics; eager PyTorch and TensorFlow on CPU return from a step when it
is done); the first interval (warm-up, with any tracing or compiling) is dropped; a run's
figure is the median images/s of its `repeats` intervals. Start-up, data loading and
compilation before the first step are outside every interval.
"""

import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

from lepton_jax.cli import CliParser, run_cli
from lepton_jax.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(REPO, "benchmarks", "peers")
PARAMS = 402_442
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS", "TF_NUM_INTRAOP_THREADS",
              "TF_NUM_INTEROP_THREADS", "KERAS_BACKEND")
LEPTON_VERSIONS = ("import json, platform, jax, jaxlib, flax, optax, numpy, lepton_jax; "
                   "print(json.dumps({'lepton_jax': lepton_jax.__version__, 'jax': jax.__version__, "
                   "'jaxlib': jaxlib.__version__, 'flax': flax.__version__, 'optax': optax.__version__, "
                   "'numpy': numpy.__version__, 'python': platform.python_version()}))")


def programs(args) -> list[dict]:
  """name, argv and environment of each program, in the order of the first round."""
  timing = ["--steps", str(args.steps), "--repeats", str(args.repeats)]
  lepton_env = {"PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
  out = [{"name": "lepton_jax (train loop)", "kind": "lepton", "env": lepton_env, "argv": [
      args.lepton_python, "-m", "lepton_jax.bench", "--config", "configs/mnist_cnn.py",
      "--only", "loop", "--rounds", "1", *timing,
      f"--config.data.manual_dir={args.mnist_dir}", "--config.optimizer.schedule=constant",
      "--config.optimizer.learning_rate=0.001", "--config.optimizer.warmup_steps=0"]}]
  peer_timing = timing + ["--mnist-dir", args.mnist_dir]
  for jit in args.keras_jit:
    out.append({"name": f"Keras 3 / TF fit (jit_compile={jit})", "kind": "peer",
                "env": {"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"},
                "argv": [args.keras_python, os.path.join(PEERS, "bench_keras_tf.py"), *peer_timing,
                         "--jit-compile", jit]})
  threads = ["--threads", str(args.torch_threads)] if args.torch_threads else []
  for compiled in ([False, True] if args.torch_compile else [False]):
    out.append({"name": "PyTorch (torch.compile)" if compiled else "PyTorch (eager)", "kind": "peer",
                "env": {}, "argv": [args.torch_python, os.path.join(PEERS, "bench_torch.py"),
                                    *peer_timing, *threads, *(["--compile"] if compiled else [])]})
  return out


def parse_lepton(stdout: str) -> dict:
  """lepton_jax.bench's loop figure, the model's parameter count and the interval rates."""
  loop = re.search(r"^loop\s+([\d.]+) ms/step\s+([\d,]+) examples/s", stdout, re.M)
  params = re.search(r"^model \S+: ([\d,]+) parameters", stdout, re.M)
  if not loop or not params:
    raise UserError("lepton_jax.bench printed no loop figure or parameter count; its output "
                    "format changed? (run it by hand: see the argv in --json)")
  intervals = [float(v.replace(",", "")) for v in re.findall(r"\| ex/s ([\d,.e+]+) \|", stdout)]
  devices = re.search(r"global batch \d+, (\d+ \S+ device\(s\))", stdout)
  return {"images_per_s": float(loop.group(2).replace(",", "")),
          "params": int(params.group(1).replace(",", "")),
          "interval_images_per_s": intervals[1:],  # the first logged interval is the warm-up
          "setup": {"devices": devices.group(1) if devices else None,
                    "threads": "XLA:CPU default", "jit": "jax.jit (XLA)",
                    "config": "configs/mnist_cnn.py, schedule constant 1e-3"}}


def parse_peer(stdout: str) -> dict:
  lines = [line for line in stdout.splitlines() if line.startswith("result: ")]
  if not lines:
    raise UserError("a peer printed no `result:` line (run it by hand: see the argv in --json)")
  return json.loads(lines[-1][len("result: "):])


def run_program(prog: dict, timeout: float) -> dict:
  """Runs one program once; its figure, with the load average and time around it."""
  env = dict(os.environ, **prog["env"])
  load_before, started = os.getloadavg(), time.time()
  try:
    proc = subprocess.run(prog["argv"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
  except subprocess.TimeoutExpired:
    raise UserError(f"{prog['name']} ran past --timeout {timeout:.0f} s") from None
  except OSError as e:
    raise UserError(f"{prog['name']}: cannot run {prog['argv'][0]}: {e.strerror}") from None
  if proc.returncode != 0:
    tail = (proc.stderr.strip().splitlines() or ["(no output on stderr)"])[-1]
    raise UserError(f"{prog['name']} failed (exit {proc.returncode}): {tail}")
  result = parse_lepton(proc.stdout) if prog["kind"] == "lepton" else parse_peer(proc.stdout)
  if result["params"] != PARAMS:
    raise UserError(f"{prog['name']} trains {result['params']:,} parameters, not {PARAMS:,}: "
                    "not the same model")
  result.update(name=prog["name"], argv=prog["argv"], load_before=load_before,
                load_after=os.getloadavg(), started=_utc(started),
                subprocess_seconds=time.time() - started)
  return result


def _utc(seconds: float) -> str:
  return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime(
      "%Y-%m-%d %H:%M:%S UTC")


def machine() -> dict:
  cpu = platform.processor() or "unknown"
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
  except OSError:
    pass
  return {"cpu": cpu, "logical_cpus": os.cpu_count(),
          "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
          "platform": platform.platform(), "hostname": platform.node(),
          "thread_env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ}}


def lepton_versions(python: str) -> dict:
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  proc = subprocess.run([python, "-c", LEPTON_VERSIONS], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=300)
  if proc.returncode != 0:
    raise UserError(f"--lepton-python {python} cannot import lepton_jax and its frameworks: "
                    f"{(proc.stderr.strip().splitlines() or ['?'])[-1]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def summarize(progs: list[dict], runs: list[dict]) -> list[dict]:
  """Per program: its runs' figures, median, range and lepton_jax's median over its median."""
  rows = []
  for prog in progs:
    mine = [r for r in runs if r["name"] == prog["name"]]
    figures = [r["images_per_s"] for r in mine]
    rows.append({"name": prog["name"], "median": statistics.median(figures),
                 "min": min(figures), "max": max(figures), "rounds": figures,
                 "setup": mine[0]["setup"], "versions": mine[0].get("versions"),
                 "params": mine[0]["params"]})
  for row in rows:
    row["lepton_over_this"] = rows[0]["median"] / row["median"]
  return rows


def _setup_text(row: dict) -> str:
  s = row["setup"]
  if "jit_compile" in s:
    return (f"model.fit, jit_compile={s['jit_compile']} (resolved {s['jit_compile_resolved']}), "
            f"TF threads {s['intra_op_threads']}/{s['inter_op_threads']} (0 = TF default)")
  if "mode" in s:
    return f"{s['mode']}, {s['threads']} intra-op threads ({s['threads_from']})"
  return f"{s['jit']}, {s['threads']}, {s['devices']}"


def print_report(info: dict, rows: list[dict]) -> None:
  m = info["machine"]
  print(f"\ndate: {info['started']} -> {info['ended']}")
  print(f"machine: {m['cpu']}, {m['logical_cpus']} logical CPUs ({m['cpus_usable']} usable), "
        f"{m['platform']}; thread variables: {m['thread_env'] or 'none set'}")
  print("load average (1/5/15 min): before " + " / ".join(f"{v:.2f}" for v in info["load_before"])
        + ", after " + " / ".join(f"{v:.2f}" for v in info["load_after"]))
  print(f"method: {info['rounds']} rounds, order rotated each round; per run, median images/s of "
        f"{info['repeats']} intervals x {info['steps']} steps after a {info['steps']}-step warm-up")
  for row in rows:
    versions = ", ".join(f"{k} {v}" for k, v in (row["versions"] or {}).items())
    print(f"  {row['name']}: {versions}; {row['params']:,} parameters")
  print("\n| program | set-up | images/s, median | range over rounds | per round | lepton_jax / this |")
  print("| --- | --- | ---: | ---: | --- | ---: |")
  for row in rows:
    print(f"| {row['name']} | {_setup_text(row)} | {row['median']:,.0f} | {row['min']:,.0f}-"
          f"{row['max']:,.0f} | {', '.join(f'{v:,.0f}' for v in row['rounds'])} | "
          f"{row['lepton_over_this']:.2f}x |")


def parse_args(argv: list[str]):
  p = CliParser(prog="benchmarks/compare_peers.py", description=__doc__.split("\n\n")[0])
  p.add_argument("--rounds", type=int, default=3, help="runs of each program, alternating")
  p.add_argument("--steps", type=int, default=100, help="steps per timed interval")
  p.add_argument("--repeats", type=int, default=5, help="timed intervals per run (median)")
  p.add_argument("--json", help="also write the table, machine and every run here")
  p.add_argument("--lepton-python", default=sys.executable)
  p.add_argument("--keras-python", default=sys.executable)
  p.add_argument("--torch-python", default="/work/peers-venv-torch/bin/python")
  p.add_argument("--keras-jit", default="auto",
                 help="comma-separated jit_compile settings, one row each: auto (the default), true, false")
  p.add_argument("--torch-compile", action="store_true",
                 help="add a row with torch.compile (besides eager)")
  p.add_argument("--torch-threads", type=int, default=None,
                 help="torch.set_num_threads(N); default: torch's own default (reported)")
  p.add_argument("--mnist-dir", default=os.path.join(os.path.dirname(REPO), "shared", "data", "mnist"))
  p.add_argument("--timeout", type=float, default=1200, help="seconds allowed per program run")
  args = p.parse_args(argv)
  for name in ("rounds", "steps", "repeats"):
    if getattr(args, name) < 1:
      raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
  if args.torch_threads is not None and args.torch_threads < 1:
    raise UserError(f"--torch-threads must be at least 1, got {args.torch_threads}")
  args.keras_jit = [v.strip() for v in args.keras_jit.split(",") if v.strip()]
  bad = [v for v in args.keras_jit if v not in ("auto", "true", "false")]
  if bad or not args.keras_jit:
    raise UserError(f"--keras-jit takes auto, true and/or false, comma-separated; got {bad or '[]'}")
  args.mnist_dir = os.path.abspath(args.mnist_dir)
  if not os.path.isdir(args.mnist_dir):
    raise UserError(f"--mnist-dir {args.mnist_dir} is not a folder (MNIST's IDX files)")
  return args


def main(argv: list[str]) -> int:
  args = parse_args(argv)
  progs = programs(args)
  info = {"started": _utc(time.time()), "machine": machine(), "load_before": os.getloadavg(),
          "rounds": args.rounds, "steps": args.steps, "repeats": args.repeats, "batch": 128}
  versions = lepton_versions(args.lepton_python)
  runs = []
  for r in range(args.rounds):
    for prog in progs[r % len(progs):] + progs[:r % len(progs)]:
      run = run_program(prog, args.timeout)
      run.setdefault("versions", versions)
      runs.append(run)
      print(f"round {r + 1}/{args.rounds}: {prog['name']}: {run['images_per_s']:,.0f} images/s "
            f"(load {run['load_before'][0]:.2f} -> {run['load_after'][0]:.2f}, "
            f"{run['subprocess_seconds']:.0f} s with start-up)", flush=True)
  info.update(ended=_utc(time.time()), load_after=os.getloadavg())
  rows = summarize(progs, runs)
  print_report(info, rows)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(dict(info, table=rows, runs=runs), f, indent=1)
    print(f"\nwrote {args.json}")
  return 0


if __name__ == "__main__":
  run_cli(main)
