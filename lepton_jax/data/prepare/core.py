"""Preparing a dataset once into records (records.py): resumable, shareable, never half-read.

A format (image folder, text files, MNIST, ...) is a `Preparer`: it names its prepared copy,
fingerprints its source, cuts the work into `Unit`s (fixed by the source alone, not by how many
processes work on it) and turns a unit into examples. `ensure` does the rest:

* each unit is written to `<split>-<index>.array_record` under a temporary name and renamed,
  then its sidecar `<split>-<index>.json` is written the same way: a unit counts as done only
  once its sidecar carries the current fingerprint, so a killed process leaves at most
  temporary files, which the next run ignores and then deletes;
* units are claimed with a byte-range lock (POSIX `lockf`) on one lock file: the kernel drops
  the locks of a killed process, so nothing stays stuck. Any number of processes (a second
  training run, the processes of a multi-host job, local helper workers) share the work; a
  process first takes the units numbered `process_index (mod process_count)`, then any left;
* the manifest is written last, atomically, by whichever process sees every unit done. Readers
  only ever open a directory through its manifest.
"""

import abc
import dataclasses
import fcntl
import glob
import hashlib
import os
import sys
import time
from typing import Any, Iterator

from lepton_jax.data import records
from lepton_jax.data.info import DatasetInfo
from lepton_jax.data.prepare.progress import Progress
from lepton_jax.errors import UserError

UNITS_LOCK = ".units.lock"
MANIFEST_LOCK = ".manifest.lock"
_POLL_SECONDS = 0.5


@dataclasses.dataclass(frozen=True)
class Unit:
  """A piece of preparation work: `items` of one split, written to one file."""

  split: str
  index: int  # within the split: the file's number
  number: int  # across the plan: the byte locked while the unit is written
  items: Any  # a sequence (paths, index ranges) that the preparer turns into examples

  @property
  def stem(self) -> str:
    return f"{self.split}-{self.index:05d}"


@dataclasses.dataclass(frozen=True)
class Skipped:
  """An item that produced no example, and why (reported as a warning)."""

  item: str
  reason: str


class Preparer(abc.ABC):
  """One source format. Subclasses are plain picklable objects (helper processes get a copy)."""

  name: str = ""  # the dataset's name and the folder under the data dir
  noun: str = "examples"  # what an item is, in progress lines: files, windows, ...
  parallel: bool = False  # whether helper processes pay off (decoding images does)

  @abc.abstractmethod
  def slug(self) -> str:
    """The prepared copy's folder name under data_dir/name: settings that make a new dataset."""

  @abc.abstractmethod
  def fingerprint(self) -> str:
    """Changes whenever the source or a setting changes (then the copy is prepared again)."""

  @abc.abstractmethod
  def plan(self) -> list[Unit]:
    """The units, numbered in order; a function of the source and settings only."""

  @abc.abstractmethod
  def features(self) -> dict[str, records.Feature]:
    """How each example is stored."""

  @abc.abstractmethod
  def examples(self, unit: Unit) -> Iterator[dict | Skipped]:
    """The unit's examples (feature name -> value) in order, Skipped for bad items."""

  @abc.abstractmethod
  def info(self) -> DatasetInfo:
    """The dataset's info (split sizes are filled in from the written files)."""

  def describe(self) -> str:
    return self.name

  def check_source(self) -> None:
    """Reads and checks what is cheap to check before preparing starts (a bad file is then an
    error on its own, before the line announcing the preparation)."""

  def read_transform(self) -> tuple[str, dict]:
    """A sources.READ_TRANSFORMS name and its arguments, applied to every decoded example."""
    return "", {}

  def check(self, sizes: dict[str, int], items: dict[str, int]) -> None:
    """Raises a UserError when what was written cannot be used (e.g. an empty split)."""
    for split, size in sizes.items():
      if size == 0:
        raise UserError(f"{self.describe()}: none of the {items[split]} {self.noun} of the "
                        f"{split} split could be read; are they really what they should be?")


def number_units(chunks: list[tuple[str, Any]]) -> list[Unit]:
  """Units from (split, items) pairs in plan order, indexed per split and numbered overall."""
  units, per_split = [], {}
  for number, (split, items) in enumerate(chunks):
    index = per_split.get(split, 0)
    per_split[split] = index + 1
    units.append(Unit(split, index, number, items))
  return units


def chunked(items, size: int) -> list:
  return [items[i:i + size] for i in range(0, len(items), size)]


def plan_fingerprint(source_fingerprint: str, plan: list[Unit]) -> str:
  """What a unit's sidecar must carry: the source's fingerprint and how it was cut into units."""
  h = hashlib.sha256(source_fingerprint.encode("utf-8", "surrogateescape"))
  for unit in plan:
    h.update(f"{unit.stem}:{len(unit.items)}\n".encode())
  return h.hexdigest()


def dataset_dir(data_dir: str, preparer: Preparer) -> str:
  """Where `preparer`'s dataset lives under `data_dir`."""
  if "://" in str(data_dir):
    raise UserError(f"data.data_dir={data_dir!r}: prepared records are read through the file "
                    "system; mount the bucket (e.g. with gcsfuse) and give the mounted path")
  return os.path.join(os.path.abspath(os.path.expanduser(str(data_dir))), preparer.name,
                      preparer.slug())


def _sidecar(directory: str, unit: Unit, fingerprint: str) -> dict | None:
  """The unit's sidecar if the unit is done for this fingerprint."""
  try:
    sidecar = records.read_json(os.path.join(directory, unit.stem + ".json"))
  except (OSError, ValueError):
    return None
  return sidecar if sidecar.get("fingerprint") == fingerprint else None


def _write_unit(preparer: Preparer, directory: str, unit: Unit, fingerprint: str) -> dict:
  features = preparer.features()
  writer = records.RecordWriter(os.path.join(directory, unit.stem + ".array_record"))
  skipped = []
  try:
    for example in preparer.examples(unit):
      if isinstance(example, Skipped):
        skipped.append([example.item, example.reason])
      else:
        writer.write(records.encode(features, example))
  except BaseException:
    writer.abort()
    raise
  writer.commit()
  sidecar = {"fingerprint": fingerprint, "records": writer.count, "items": len(unit.items),
             "skipped": skipped}
  records.write_json_atomically(os.path.join(directory, unit.stem + ".json"), sidecar)
  return sidecar


def claim_and_write(preparer: Preparer, directory: str, unit: Unit,
                    fingerprint: str) -> dict | None:
  """Writes `unit` unless it is done (returns its sidecar) or another process holds it (None).

  Module-level, so that helper processes can run it.
  """
  fd = os.open(os.path.join(directory, UNITS_LOCK), os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, unit.number)
    except OSError:  # held by a live process: it is writing this unit now
      return None
    return _sidecar(directory, unit, fingerprint) or _write_unit(preparer, directory, unit,
                                                                 fingerprint)
  finally:
    os.close(fd)  # closing the descriptor releases the lock


@dataclasses.dataclass
class Job:
  """One process's part in preparing a dataset."""

  preparer: Preparer
  directory: str
  fingerprint: str  # of the source and the plan: what done units' sidecars carry
  process_index: int = 0
  process_count: int = 1
  workers: int = 0
  log: Any = None  # where progress goes (None: silent)
  progress_interval: float = 10.0

  def ordered(self, plan: list[Unit]) -> list[Unit]:
    """This process's own units first, then everyone else's (in case they are slow or gone)."""
    mine = [u for u in plan if u.number % self.process_count == self.process_index]
    return mine + [u for u in plan if u.number % self.process_count != self.process_index]

  def run(self, plan: list[Unit]) -> None:
    done = {u.number: s for u in plan if (s := _sidecar(self.directory, u, self.fingerprint))}
    progress = Progress(self.preparer.name, sum(len(u.items) for u in plan),
                        self.preparer.noun, self.log, self.progress_interval,
                        done=sum(s["items"] for s in done.values()))
    pending = [u for u in self.ordered(plan) if u.number not in done]
    busy = self._write(pending, progress)
    self._wait_for(busy, progress)
    progress.finish()

  def _write(self, units: list[Unit], progress: Progress) -> list[Unit]:
    """Writes what it can claim; returns the units that other processes hold."""
    busy = []
    if self.workers > 1 and self.preparer.parallel and len(units) > 1:
      import concurrent.futures
      import multiprocessing
      with concurrent.futures.ProcessPoolExecutor(
          min(self.workers, len(units)), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(claim_and_write, self.preparer, self.directory, u,
                               self.fingerprint): u for u in units}
        for future in concurrent.futures.as_completed(futures):
          self._account(future.result(), futures[future], busy, progress)
    else:
      for unit in units:
        self._account(claim_and_write(self.preparer, self.directory, unit, self.fingerprint),
                      unit, busy, progress)
    return busy

  @staticmethod
  def _account(sidecar, unit, busy, progress) -> None:
    if sidecar is None:
      busy.append(unit)
    else:
      progress.advance(sidecar["items"])

  def _wait_for(self, busy: list[Unit], progress: Progress) -> None:
    """Waits for units another process is writing; takes over any whose writer died."""
    if busy and self.log is not None:
      print(f"waiting for another process that is preparing {len(busy)} unit(s) of "
            f"{self.directory}", file=self.log, flush=True)
    while busy:
      time.sleep(_POLL_SECONDS)
      still = []
      for unit in busy:
        sidecar = claim_and_write(self.preparer, self.directory, unit, self.fingerprint)
        self._account(sidecar, unit, still, progress)
      busy = still


def _finalize(job: Job, plan: list[Unit], fingerprint: str) -> records.Manifest:
  """Writes the manifest (once, under a lock) from the units' sidecars."""
  preparer, directory = job.preparer, job.directory
  fd = os.open(os.path.join(directory, MANIFEST_LOCK), os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.lockf(fd, fcntl.LOCK_EX)
    manifest = records.read_manifest(directory)
    if manifest is not None and manifest.fingerprint == fingerprint:
      return manifest
    sidecars = [(u, _sidecar(directory, u, job.fingerprint)) for u in plan]
    splits, sizes, items, skipped = {}, {}, {}, []
    for unit, sidecar in sidecars:
      splits.setdefault(unit.split, []).append((unit.stem + ".array_record", sidecar["records"]))
      sizes[unit.split] = sizes.get(unit.split, 0) + sidecar["records"]
      items[unit.split] = items.get(unit.split, 0) + sidecar["items"]
      skipped += sidecar["skipped"]
    preparer.check(sizes, items)
    transform, args = preparer.read_transform()
    manifest = records.Manifest(directory, fingerprint, preparer.features(),
                                {s: tuple(f) for s, f in splits.items()},
                                records.info_fields(preparer.info()), transform, args,
                                tuple(tuple(s) for s in skipped))
    records.write_json_atomically(os.path.join(directory, records.MANIFEST), manifest.to_json(),
                                  sync=True)
    _remove_leftovers(directory, plan)
    return manifest
  finally:
    os.close(fd)


def _remove_leftovers(directory: str, plan: list[Unit]) -> None:
  """Temporary files of killed writers and units of an older plan."""
  keep = {u.stem + ext for u in plan for ext in (".array_record", ".json")}
  for path in glob.glob(os.path.join(directory, "*")):
    name = os.path.basename(path)
    stale_unit = name.endswith((".array_record", ".json")) and name != records.MANIFEST
    if ".tmp." in name or (stale_unit and name not in keep):
      try:
        os.remove(path)
      except OSError:  # another process removed it first
        pass


def ensure(preparer: Preparer, data_dir: str, process_index: int = 0, process_count: int = 1,
           workers: int | None = None, verbose: bool = True,
           progress_interval: float = 10.0) -> records.Manifest:
  """The manifest of `preparer`'s dataset under `data_dir`, preparing it first if needed.

  Every process of a multi-process job may call it at once (each with its process_index):
  the work is shared, and all return the same manifest. `workers` helper processes decode in
  parallel on this host (None: one per core for big sources that profit, else none). Progress
  and warnings go to stderr, from process 0 only, when `verbose`.
  """
  directory = dataset_dir(data_dir, preparer)
  fingerprint = preparer.fingerprint()
  manifest = records.read_manifest(directory)
  if manifest is not None and manifest.fingerprint == fingerprint:
    return manifest
  log = sys.stderr if verbose and process_index == 0 else None
  preparer.check_source()
  if log is not None:
    again = " (its source changed since it was prepared)" if manifest is not None else ""
    print(f"preparing {preparer.describe()} into {directory}{again}", file=log, flush=True)
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:
    raise UserError(f"cannot create {directory} ({e.strerror}); set --config.data.data_dir to "
                    "a writable directory") from e
  plan = preparer.plan()
  job = Job(preparer, directory, plan_fingerprint(fingerprint, plan), process_index,
            process_count, _workers(workers, preparer, plan), log, progress_interval)
  job.run(plan)
  manifest = _finalize(job, plan, fingerprint)
  if log is not None and manifest.skipped:
    shown = ", ".join(f"{item} ({reason})" for item, reason in manifest.skipped[:3])
    print(f"warning: {preparer.describe()}: skipped {len(manifest.skipped)} unreadable "
          f"{preparer.noun}: {shown}{', ...' if len(manifest.skipped) > 3 else ''}",
          file=log, flush=True)
  return manifest


def _workers(workers: int | None, preparer: Preparer, plan: list[Unit]) -> int:
  if workers is not None:
    return max(0, int(workers))
  if not preparer.parallel or sum(len(u.items) for u in plan) < 2000:
    return 0  # starting helper processes costs seconds: only worth it for big sources
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
