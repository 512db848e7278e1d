"""The latent-code store: one code per training image, kept in the dataset file and in the checkpoint.

In the original every group of ``data.hdf5`` holds the initial ``code`` (from ``download.py``) and training
adds ``update``, the unit-norm code after the gradient step ``z' = (z - alpha dl/dz) / ||z - alpha dl/dz||``.
Readers take ``update`` when present, else ``code``, so the codes persist across runs until ``cleaner.py``
deletes every ``update`` (spec §1.2, bug #2 kept).

The port keeps that contract and adds exact resume:

- During a run the codes of the train split live in a :class:`CodeTable` (a [N_train, d] variable plus a
  "written" flag per id), updated inside the compiled train step and saved in every checkpoint.
- :class:`CodeStore` mirrors the table into the HDF5 file each time a checkpoint is saved (before the
  checkpoint itself), so the file always matches the newest checkpoint. A restart restores the table from
  its checkpoint and rewrites the file to match (including removing ``update`` entries written after that
  checkpoint), so an interrupted run ends exactly like an uninterrupted one.

Write semantics (``--code_update_mode``):

- ``first_only`` (default, the original): h5py refuses to create ``update`` twice and the original swallowed
  the error, so each id's code changes once, at its first visit, and is frozen afterwards (spec §1.5).
- ``every_step``: the evident intent; every visit overwrites the code.
"""

from __future__ import annotations

import h5py
import numpy as np
import tensorflow as tf

from glo.config import UPDATE_MODES  # noqa: F401 - re-exported: the modes are defined with the flags


def read_code(group: h5py.Group) -> np.ndarray:
    """float32 [d]: the group's ``update`` if present, else its ``code``."""
    return np.asarray(group["update"][()] if "update" in group else group["code"][()], dtype=np.float32)


def write_update(group: h5py.Group, code: np.ndarray) -> None:
    """Store ``code`` as the group's float32 ``update`` (created, or overwritten in place)."""
    code = np.asarray(code, dtype=np.float32)
    if "update" in group and group["update"].shape == code.shape and group["update"].dtype == np.float32:
        group["update"][...] = code
    else:
        if "update" in group:
            del group["update"]
        group.create_dataset("update", data=code)


def clean_updates(file: h5py.File) -> int:
    """Delete every group's ``update`` (``cleaner.py``); return how many were removed."""
    removed = 0
    for name in list(file.keys()):
        group = file[name]
        if isinstance(group, h5py.Group) and "update" in group:
            del group["update"]
            removed += 1
    file.flush()
    return removed


class CodeTable(tf.Module):
    """The train split's codes as checkpointed variables.

    Attributes:
        table: float32 [N_train, d]; row i is the code of the i-th train id.
        written: int32 [N_train]; 1 once row i holds an update (the HDF5 ``update`` exists).
    """

    def __init__(self, initial: np.ndarray, written: np.ndarray, name: str = "codes"):
        super().__init__(name=name)
        self.table = tf.Variable(np.asarray(initial, np.float32), trainable=False, name="table")
        self.written = tf.Variable(np.asarray(written, np.int32), trainable=False, name="written")

    def gather(self, positions: tf.Tensor) -> tf.Tensor:
        """[B] int32 positions -> [B, d] codes."""
        return tf.gather(self.table, positions)

    def store(self, positions: tf.Tensor, new_codes: tf.Tensor, mode: str) -> None:
        """Write the step's updated codes with the original's semantics (inside the train step).

        The batch may hold an id twice (batches span epoch boundaries). Like the original's loop over the
        batch, ``first_only`` keeps the first occurrence's code and only for ids never written before;
        ``every_step`` keeps the last occurrence's. Every duplicate row carries the winning value, so the
        scatter is deterministic.

        Args:
            positions: int32 [B].
            new_codes: float32 [B, d], already unit norm.
            mode: one of :data:`UPDATE_MODES`.
        """
        same = tf.cast(tf.equal(positions[:, None], positions[None, :]), tf.int32)  # [B, B]
        if mode == "first_only":
            winner = tf.argmax(same, axis=1, output_type=tf.int32)  # first occurrence of each row's id
        else:
            last = tf.shape(positions)[0] - 1
            winner = last - tf.argmax(tf.reverse(same, axis=[1]), axis=1, output_type=tf.int32)
        values = tf.gather(new_codes, winner)
        if mode == "first_only":
            frozen = tf.gather(self.written, positions) > 0
            values = tf.where(frozen[:, None], tf.gather(self.table, positions), values)
        index = positions[:, None]
        self.table.scatter_nd_update(index, values)
        self.written.scatter_nd_update(index, tf.ones_like(positions))


class CodeStore:
    """Keeps the HDF5 file in step with a :class:`CodeTable` (written when checkpoints are saved).

    Args:
        file: the dataset file opened read-write.
        train_ids: the ids of the table's rows, in order.
    """

    def __init__(self, file: h5py.File, train_ids):
        self.file = file
        self.ids = list(train_ids)
        self._synced_table, self._synced_written = self.load()

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """The file's current codes: (float32 [N_train, d] update-or-code, int32 [N_train] has-update)."""
        groups = [self.file[i] for i in self.ids]
        table = np.stack([read_code(g) for g in groups])
        written = np.array(["update" in g for g in groups], dtype=np.int32)
        return table, written

    def make_table(self) -> CodeTable:
        return CodeTable(self._synced_table, self._synced_written)

    def sync(self, codes: CodeTable) -> int:
        """Make the file hold exactly the table's codes; return the number of groups touched.

        Rows written in the table get ``update`` (only those that differ from the file are rewritten); rows
        not written lose an ``update`` the file may hold from after the restored checkpoint.
        """
        table, written = codes.table.numpy(), codes.written.numpy()
        changed = (written != self._synced_written) | (
            (written > 0) & np.any(table != self._synced_table, axis=1)
        )
        for row in np.flatnonzero(changed):
            group = self.file[self.ids[row]]
            if written[row]:
                write_update(group, table[row])
            elif "update" in group:
                del group["update"]
        if changed.any():
            self.file.flush()
        self._synced_table, self._synced_written = table.copy(), written.copy()
        return int(changed.sum())
