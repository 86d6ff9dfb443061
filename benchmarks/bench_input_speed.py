"""Input pipeline speed: lepton_jax's streamed pipeline against tf.data, same images, same work.

    PYTHONPATH=. python benchmarks/bench_input_speed.py [--images 384] [--batch 64] \
        [--batches 15] [--rounds 2] [--workers -1] [--threads 2]

Writes `--images` 224x224 RGB JPEGs (smooth random pictures, quality 90, 4 class folders) to a
temporary folder and prepares them as an image folder (records: each JPEG is stored as it is).
Both pipelines then decode every image in full, take an Inception-style random resized crop
(area 8-100%, aspect 3/4-4/3, up to 10 tries, else the whole image), resize it bilinearly back
to 224x224, flip half of them left-right and batch them as uint8:

  * ours: stream.train_batches over the records (global shuffle by index), the crop and flip in
    Pillow/numpy as the per-example `augment`, `--workers` processes (-1: the host default)
    and `--threads` threads each;
  * tf.data: file names shuffled, read_file + decode_jpeg + sample_distorted_bounding_box +
    slice + resize + random_flip_left_right, map with AUTOTUNE parallelism, prefetch AUTOTUNE.

With --decode_only both pipelines only decode and batch (lepton_jax's default design: the crop
and flip are data.augment ops on the device).

Each round runs both, alternating (ours first), each over `--batches` batches after 3 warm-up
batches (workers started, caches warm); it prints images/s per run and ours / tf.data.
"""

import argparse
import math
import os
import shutil
import sys
import tempfile
import time

import numpy as np

SIZE = 224


def write_jpegs(root: str, count: int, size: int, seed: int = 0, classes: int = 4) -> list[str]:
  """`count` smooth random RGB pictures as JPEG files in `classes` class folders."""
  from PIL import Image
  rng = np.random.default_rng(seed)
  paths = []
  for i in range(count):
    folder = os.path.join(root, f"class{i % classes}")
    os.makedirs(folder, exist_ok=True)
    coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    picture = Image.fromarray(coarse).resize((size, size), Image.BICUBIC)
    pixels = np.asarray(picture, np.int16) + rng.integers(-12, 13, (size, size, 3))
    path = os.path.join(folder, f"{i:06d}.jpg")
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
    paths.append(path)
  return paths


def crop_box(rng, height, width, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), attempts=10):
  """(left, top, right, bottom) of an Inception-style random crop."""
  area = height * width
  for _ in range(attempts):
    target = area * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
    w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
    if 0 < w <= width and 0 < h <= height:
      left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
      return left, top, left + w, top + h
  return 0, 0, width, height


def random_resized_crop_flip(example, rng):
  """The host augmentation of the benchmark: crop, resize back, flip half the time. OpenCV
  (SIMD) resizes the crop (a view: cropping first costs nothing) about six times faster than
  Pillow's resampler, and flips in place of numpy's reversed copy."""
  import cv2
  image = example["image"]
  left, top, right, bottom = crop_box(rng, *image.shape[:2])
  out = cv2.resize(image[top:bottom, left:right], (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
  if rng.random() < 0.5:
    out = cv2.flip(out, 1)
  return {"image": out, "label": example["label"]}


def ours(data_dir: str, root: str, batch: int, workers: int, threads: int, augment: bool):
  from lepton_jax.data import order, sources, stream
  from lepton_jax.data.prepare import core, image_folder
  manifest = core.ensure(image_folder.ImageFolder(root, (SIZE, SIZE), 3, 0.01), data_dir,
                         verbose=False)
  source = sources.RecordSource(manifest, "train")
  layout = order.ShardLayout.create(0, 0, 1)
  return stream.train_batches(source, layout, batch, seed=0, workers=workers, threads=threads,
                              augment=random_resized_crop_flip if augment else None)


def tf_data(paths: list[str], batch: int, augment: bool):
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf

  def load(path):
    image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
    if not augment:
      return image
    begin, size, _ = tf.image.sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.zeros([1, 0, 4]), area_range=(0.08, 1.0),
        aspect_ratio_range=(3 / 4, 4 / 3), max_attempts=10, use_image_if_no_bounding_boxes=True)
    image = tf.image.resize(tf.slice(image, begin, size), (SIZE, SIZE), method="bilinear")
    image = tf.image.random_flip_left_right(image)
    return tf.cast(tf.round(image), tf.uint8)

  ds = tf.data.Dataset.from_tensor_slices(paths).shuffle(len(paths), seed=0).repeat()
  ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch, drop_remainder=True)
  return iter(ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator())


def images_per_second(batches, count: int, batch: int, warmup: int = 3) -> float:
  for _ in range(warmup):
    next(batches)
  start = time.perf_counter()
  for _ in range(count):
    b = next(batches)
    assert (b["image"] if isinstance(b, dict) else b).shape[1:] == (SIZE, SIZE, 3)
  return count * batch / (time.perf_counter() - start)


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--images", type=int, default=384)
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--batches", type=int, default=15, help="timed batches per run")
  p.add_argument("--rounds", type=int, default=2, help="alternating (ours, tf.data) rounds")
  p.add_argument("--workers", type=int, default=-1, help="our worker processes; -1: default")
  p.add_argument("--threads", type=int, default=2, help="our threads per process")
  p.add_argument("--decode_only", action="store_true", help="no crop and flip on the host")
  args = p.parse_args()
  from lepton_jax.data import stream
  workers = stream.default_workers() if args.workers < 0 else args.workers
  tmp = tempfile.mkdtemp(prefix="bench_input_speed_")
  try:
    root = os.path.join(tmp, "images")
    paths = write_jpegs(root, args.images, SIZE)
    mean_kb = sum(os.path.getsize(q) for q in paths) / len(paths) / 1024
    print(f"{args.images} JPEGs {SIZE}x{SIZE}, {mean_kb:.1f} KB each; batch {args.batch}, "
          f"{args.batches} timed batches per run; ours: {workers} worker(s), {args.threads} "
          f"thread(s); {os.cpu_count()} cores; "
          f"{'decode only' if args.decode_only else 'decode, crop, resize, flip'}", flush=True)
    augment = not args.decode_only
    for r in range(args.rounds):
      with ours(os.path.join(tmp, "data"), root, args.batch, workers, args.threads,
                augment) as batches:
        a = images_per_second(batches, args.batches, args.batch)
      b = images_per_second(tf_data(paths, args.batch, augment), args.batches, args.batch)
      print(f"round {r + 1}: ours {a:,.0f} images/s, tf.data {b:,.0f} images/s, "
            f"ours / tf.data = {a / b:.2f}", flush=True)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
