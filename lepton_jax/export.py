"""Exporting a trained workdir for serving, without lepton_jax:

    python -m lepton_jax.export --workdir W --out DIR [--checkpoint latest|best|STEP]
        [--platforms cpu,cuda,tpu] [--no_saved_model]

writes

    DIR/model.jax_export   serialized `jax.export` (StableHLO) of the whole inference
                           function, raw input -> host transform -> preprocess -> model
                           -> probabilities, batch-polymorphic (input shape (b, ...));
    DIR/saved_model/       the same function as a TensorFlow SavedModel (jax2tf,
                           polymorphic batch, parameters as variables) for TF-serving:
                           signature `serving_default`, input named after the
                           dataset's input key, output `probabilities`;
    DIR/metadata.json      input shape/dtype, preprocessing, label names, what the
                           output means, how to load both artifacts.

Loading them needs only jax (or only tensorflow):

    exported = jax.export.deserialize(open("DIR/model.jax_export", "rb").read())
    probabilities = exported.call(images_uint8)                   # (N, 28, 28, 1) -> (N, 10)

    model = tf.saved_model.load("DIR/saved_model")
    probabilities = model.signatures["serving_default"](image=images)["probabilities"]

Models with a `pool_impl` option are exported with 'reduce_window', the
portable implementation (the forward pass is the same on every backend; the
CPU-tuned default is not batch-polymorphic). Both artifacts are checked
against the JAX model before the command returns.
"""

import contextlib
import json
import os
import warnings

import jax
import numpy as np
from etils import epath

from lepton_jax import predict, run_record
from lepton_jax.cli import CliParser, run_cli
from lepton_jax.errors import UserError

JAX_EXPORT_FILE = "model.jax_export"
SAVED_MODEL_DIR = "saved_model"
METADATA_FILE = "metadata.json"
DEFAULT_PLATFORMS = ("cpu", "cuda", "tpu")
VERIFY_BATCH = 3


def check_input_shape(workdir, record: dict) -> tuple:
  shape = record.get("dataset", {}).get("input_shape")
  if (shape is None or not isinstance(shape, (list, tuple))
      or any(not isinstance(d, int) or d <= 0 for d in shape)):
    raise UserError(f"the input shape of the model in {workdir} is unknown (run.json dataset.input_shape "
                    f"= {shape!r}); export needs the fixed shape of one example")
  return tuple(shape)


def export_model(predictor):
  """The run's model as exported: portable layer implementations (same parameters)."""
  model = predictor.model
  if model.has_field("pool_impl"):
    model = model.replace(pool_impl="reduce_window")
  if model.has_field("conv_impl"):
    model = model.replace(conv_impl="lax")
  return model


def traceable_host_transform(predictor, shape, dtype):
  """(fn, note): the dataset's host_transform as a jax function, when it traces
  and agrees with the numpy one; (None, why) otherwise."""
  if not predictor.has_host_transform:
    return None, "none (the dataset has no host-side transform)"
  key = predictor.info.input_key
  fn = lambda x: predictor.dataset.host_transform({key: x})[key]  # noqa: E731
  rng = np.random.default_rng(0)
  if np.issubdtype(dtype, np.integer):
    info = np.iinfo(dtype)
    probe = rng.integers(info.min, min(int(info.max), 255) + 1, (4,) + shape).astype(dtype)
  else:
    probe = rng.normal(size=(4,) + shape).astype(dtype)
  host = np.asarray(predictor.host_transform(probe))
  name = f"{type(predictor.dataset).__name__}.host_transform"
  try:
    traced = np.asarray(jax.jit(fn)(probe))
    if traced.shape == host.shape and np.allclose(traced, host, rtol=1e-5, atol=1e-5):
      return fn, f"included: {name}, traced into the graph"
    why = "its traced result differs from the numpy one"
  except Exception as e:  # an arbitrary numpy/Python transform may not trace
    why = f"it does not trace ({type(e).__name__})"
  if host.dtype == probe.dtype and np.array_equal(host, probe):
    return None, f"none needed: {name} leaves {np.dtype(dtype).name} inputs of this shape unchanged"
  return None, why


def require_tensorflow() -> None:
  """A UserError, before any work, where the SavedModel cannot be written: TensorFlow is an
  optional dependency (training, evaluation and predict do without it)."""
  try:
    import tensorflow  # noqa: F401
  except ImportError as e:
    raise UserError("the SavedModel export needs TensorFlow: pip install 'lepton-jax[export]', "
                    "or pass --no_saved_model for the jax.export file alone") from e


def _tf_dtype(dtype):
  import tensorflow as tf
  return tf.as_dtype(np.dtype(dtype))


def save_tf_saved_model(apply, variables, shape, dtype, input_key: str, path, platforms) -> None:
  """`apply(variables, x)` as a SavedModel; batch-polymorphic, variables as tf.Variables."""
  import tensorflow as tf
  from jax.experimental import jax2tf
  tf_fn = jax2tf.convert(apply, polymorphic_shapes=[None, "(b, ...)"], with_gradient=False,
                         native_serialization_platforms=tuple(platforms))
  tf_vars = tf.nest.map_structure(tf.Variable, jax.tree.map(np.asarray, variables))
  module = tf.Module()
  module._variables = tf.nest.flatten(tf_vars)  # tracked, so the SavedModel stores them

  @tf.function(autograph=False, jit_compile=False,
               input_signature=[tf.TensorSpec((None,) + tuple(shape), _tf_dtype(dtype), name=input_key)])
  def serve(x):
    return {"probabilities": tf_fn(tf_vars, x)}

  module.serve = serve
  with stablehlo_target(tensorflow_stablehlo_version()):
    serve.get_concrete_function()  # lowers the JAX function, now
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})


def tensorflow_stablehlo_version() -> str | None:
  """The newest StableHLO version this TensorFlow's XlaCallModule reads (None: unknown)."""
  try:
    from tensorflow.compiler.mlir.stablehlo import stablehlo
    return str(stablehlo.get_current_version())
  except (ImportError, AttributeError):
    return None


def _version(v: str) -> tuple:
  return tuple(int(p) for p in v.split("."))


@contextlib.contextmanager
def stablehlo_target(version: str | None):
  """Within: jax.export writes StableHLO no newer than `version`.

  jax serializes for a 4-week compatibility window of its own StableHLO; a
  TensorFlow release may read only an older one (TF 2.21: 1.13.7 vs jax 0.12's
  1.18). Lowering to the older version keeps the SavedModel loadable there.
  (Uses jax's private serializer hook: if it moves, the default is kept.)
  """
  try:
    from jax._src.export import _export
    hlo = _export.hlo
    original = hlo.get_version_from_compatibility_requirement
  except (ImportError, AttributeError):
    yield
    return
  if version is None:
    yield
    return

  def capped(requirement):
    default = original(requirement)
    return version if _version(version) < _version(default) else default

  hlo.get_version_from_compatibility_requirement = capped
  try:
    yield
  finally:
    hlo.get_version_from_compatibility_requirement = original


def output_meaning(predictor) -> str:
  if predictor.binary:
    names = predictor.label_names
    return (f"(batch, 2) float32: [P({names[0]}), P({names[1]})] from one sigmoid logit; "
            f"predict {names[1]!r} when P({names[1]}) >= the threshold (default 0.5)")
  if predictor.language_model:
    return "(batch, time, vocab) float32: the next-token distribution at every position"
  return "(batch, num_classes) float32: softmax probabilities over the classes, in label_names order"


def metadata(predictor, shape, dtype, host_note, platforms, files, verification,
             out_shape) -> dict:
  config = predictor.config
  meta = {
      "format_version": 1,
      "workdir": predictor.workdir,
      "checkpoint_step": int(predictor.step),
      "experiment": config.experiment,
      "model": config.model.name,
      "dataset": predictor.info.name,
      "input": {"name": predictor.info.input_key, "shape": [None] + list(shape),
                "dtype": np.dtype(dtype).name,
                "description": predictor.info.input_description or "raw examples as in the dataset"},
      "preprocessing": {
          "host_transform": host_note,
          "device_ops": list(config.data.preprocess),
          "image_files": ("decode, convert to the input's channels (L/RGB/RGBA) and resize "
                          "(bilinear) to its height and width, as lepton_jax.predict does"),
      },
      "output": {"name": "probabilities", "shape": out_shape, "dtype": "float32",
                 "meaning": output_meaning(predictor)},
      "label_names": predictor.label_names,
      "platforms": list(platforms),
      "files": files,
      "usage": {
          "jax": (f"exp = jax.export.deserialize(open('{JAX_EXPORT_FILE}', 'rb').read()); "
                  "probs = exp.call(x)"),
          "tensorflow": (f"m = tf.saved_model.load('{SAVED_MODEL_DIR}'); probs = m.signatures["
                         f"'serving_default']({predictor.info.input_key}=x)['probabilities']"),
      },
      "verification": verification,
      "versions": {"jax": jax.__version__},
  }
  if predictor.binary:
    meta["threshold"] = 0.5
  return meta


def export_workdir(workdir, out_dir, checkpoint="latest", platforms=DEFAULT_PLATFORMS,
                   saved_model: bool = True, verbose: bool = True) -> dict:
  """Exports checkpoint `checkpoint` of `workdir` into `out_dir`; returns the metadata."""
  if saved_model:
    require_tensorflow()
  record = run_record.read(workdir)
  shape = check_input_shape(workdir, record)
  dtype = np.dtype(record["dataset"]["input_dtype"])
  platforms = tuple(platforms)
  predictor = predict.load(workdir, checkpoint)
  out = epath.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)

  host_fn, host_note = traceable_host_transform(predictor, shape, dtype)
  if predictor.has_host_transform and host_fn is None and not host_note.startswith("none"):
    warnings.warn(f"the dataset's host_transform is not part of the export ({host_note}): inputs "
                  "must be host-transformed first")
    host_note = (f"NOT included ({host_note}): apply {type(predictor.dataset).__name__}"
                 ".host_transform to inputs first")
  model = export_model(predictor)
  fn = predictor.probabilities_fn(host_fn, model)

  spec = jax.ShapeDtypeStruct(jax.export.symbolic_shape("b, ...", like=(None,) + shape), dtype)
  try:
    exported = jax.export.export(jax.jit(fn), platforms=platforms)(spec)
  except Exception as e:  # lowering errors carry long messages: keep the first line
    raise UserError(f"cannot export {config_name(predictor)} batch-polymorphically: "
                    f"{type(e).__name__}: {str(e).splitlines()[0]}") from e
  (out / JAX_EXPORT_FILE).write_bytes(exported.serialize())
  files = {"jax_export": JAX_EXPORT_FILE}

  # Checks on a batch size the export never saw: the JAX model (predict) against both artifacts.
  probe = _probe_batch(predictor, shape, dtype, VERIFY_BATCH)
  reference = predictor.predict(probe)
  reloaded = jax.export.deserialize(bytearray((out / JAX_EXPORT_FILE).read_bytes()))
  verification = {"batch_size": VERIFY_BATCH,
                  "jax_export_max_abs_diff": float(np.abs(np.asarray(reloaded.call(probe)) - reference).max())}
  if saved_model:
    path = out / SAVED_MODEL_DIR
    save_tf_saved_model(predictor.apply_fn(host_fn, model), predictor.variables, shape, dtype,
                        predictor.info.input_key, path, platforms)
    files["saved_model"] = SAVED_MODEL_DIR
    import tensorflow as tf
    loaded = tf.saved_model.load(str(path))
    tf_out = loaded.signatures["serving_default"](**{predictor.info.input_key: tf.constant(probe)})
    verification["saved_model_max_abs_diff"] = float(
        np.abs(tf_out["probabilities"].numpy() - reference).max())
  out_shape = [d if isinstance(d, int) else None for d in exported.out_avals[0].shape]
  meta = metadata(predictor, shape, dtype, host_note, platforms, files, verification, out_shape)
  (out / METADATA_FILE).write_text(json.dumps(meta, indent=2))
  worst = max(v for k, v in verification.items() if k.endswith("diff"))
  if worst > 1e-4:
    raise RuntimeError(f"exported model differs from the JAX model by {worst:g}: see {out / METADATA_FILE}")
  if verbose:
    print(f"exported {config_name(predictor)} (checkpoint {predictor.step}) to {out}: "
          + ", ".join(files.values()) + f", {METADATA_FILE}; input (b, "
          + ", ".join(map(str, shape)) + f") {dtype.name}; max |diff| vs JAX {worst:.2g}")
  return meta


def config_name(predictor) -> str:
  return f"{predictor.config.model.name} on {predictor.info.name}"


def _probe_batch(predictor, shape, dtype, n):
  rng = np.random.default_rng(1)
  if predictor.language_model:
    return rng.integers(0, predictor.info.num_classes, (n,) + shape).astype(dtype)
  if np.issubdtype(dtype, np.integer):
    return rng.integers(0, min(int(np.iinfo(dtype).max), 255) + 1, (n,) + shape).astype(dtype)
  return rng.normal(size=(n,) + shape).astype(dtype)


def main(argv) -> int:
  # Before TensorFlow is first imported (by the SavedModel writer): no C++ start-up chatter.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  p = CliParser(prog="python -m lepton_jax.export", description=__doc__)
  p.add_argument("--workdir", required=True, help="the trained run's workdir")
  p.add_argument("--out", required=True, help="directory for the exported artifacts")
  p.add_argument("--checkpoint", default="latest", help="latest, best or a step number")
  p.add_argument("--platforms", default=",".join(DEFAULT_PLATFORMS),
                 help="comma-separated platforms to lower for (cpu, cuda, rocm, tpu)")
  p.add_argument("--no_saved_model", action="store_true", help="skip the TensorFlow SavedModel")
  args = p.parse_args(argv)
  platforms = tuple(x.strip() for x in args.platforms.split(",") if x.strip())
  export_workdir(args.workdir, args.out, args.checkpoint, platforms, not args.no_saved_model)
  return 0


def run(argv: list[str] | None = None) -> None:
  run_cli(main, argv)


if __name__ == "__main__":
  run()
