"""Checkpoints of a workdir: the manager (save, restore, resume), the writer thread, integrity
and fit checks, selection of latest/best/STEP, and init_from. Nothing outside this package reads
Orbax's on-disk layout."""
