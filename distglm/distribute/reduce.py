"""The reduction of a pass's sums, in two stages: each worker over its chunks, the coordinator
over the workers. This module is the one place either happens.

Both stages add with compensation (a two-sum per addition, its rounding error carried in a
second float64 array): a total is a pair ``(hi, lo)`` whose sum carries the exact sum of the
parts to about ``2**-106`` of their magnitudes. A worker adds its chunks' float sums into one
such pair per total and sends ``hi`` and ``lo`` as one buffer (its size set by the problem, not
by how many chunks the worker holds); the coordinator adds the workers' pairs the same way, in
address order, and rounds once.

Float32 partial sums whose exponents span less than about 50 bits (any realistic loss or
gradient; zeros do not count) add up **exactly** this way, so a total is the correctly rounded
exact sum of the chunks' partial sums: the same bits whichever worker held which chunk, however
many workers there are, and when a lost worker's chunks are recomputed elsewhere. Beyond that
span the totals of two assignments differ by at most a few units in the last place of the sum
of the magnitudes (relative ``1e-15``), which is what the tests bound.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["CompensatedTotals", "add_buffers", "reduce_worker_buffers", "two_sum"]


def two_sum(a, b):
    """``s, e`` with ``s = fl(a + b)`` and ``s + e == a + b`` exactly (Knuth's two-sum; float64
    arrays or scalars, any signs and magnitudes)."""
    s = a + b
    b_virtual = s - a
    e = (a - (s - b_virtual)) + (b - b_virtual)
    return s, e


class CompensatedTotals:
    """Float64 totals of fixed shapes, each kept as ``hi + lo`` (see the module docstring).

    Parameters
    ----------
    shapes : sequence of tuple of int
        One shape per total (e.g. loss ``(K,)``, coefficient gradient ``(p, K, c)``).
    """

    def __init__(self, shapes: Sequence[Sequence[int]]):
        self.shapes = [tuple(int(n) for n in s) for s in shapes]
        self._offsets = [0, *itertools.accumulate(math.prod(s) for s in self.shapes)]
        # one flat array each; ``hi`` / ``lo`` are views of it, one per total
        self._hi = np.zeros(self._offsets[-1])
        self._lo = np.zeros(self._offsets[-1])
        self.hi = [self._view(self._hi, i) for i in range(len(self.shapes))]
        self.lo = [self._view(self._lo, i) for i in range(len(self.shapes))]

    def _view(self, flat: np.ndarray, i: int) -> np.ndarray:
        return flat[self._offsets[i] : self._offsets[i + 1]].reshape(self.shapes[i])

    @property
    def size(self) -> int:
        """Floats in one of ``hi`` or ``lo`` (the buffer holds twice as many)."""
        return self._offsets[-1]

    def positions(self, axes: Sequence[int], cols=None) -> np.ndarray | None:
        """Where the entries of a flat part land in the flat totals.

        Parameters
        ----------
        axes : sequence of int
            The output axis of each total.
        cols : int array, optional
            The outputs a part holds, in its order (distinct indices; None: all of them).

        Returns
        -------
        int64 array of shape (part size,), or None
            For a part that is the totals' parts (each with ``len(cols)`` entries on its axis
            ``axes[i]``) raveled and concatenated in order; None where the part covers every
            total in order (no gather and scatter).
        """
        if cols is None or not self.shapes:
            return None
        cols = np.asarray(cols, np.int64)
        n = self.shapes[0][axes[0]]
        if cols.size == n and np.array_equal(cols, np.arange(n)):
            return None  # every output, in order: no gather and scatter (4x faster)
        index = np.arange(self.size)
        return np.concatenate(
            [np.take(self._view(index, i), cols, axis=axis).ravel() for i, axis in enumerate(axes)]
        )

    def add(self, parts: Sequence, axes: Sequence[int], cols=None) -> None:
        """Add one chunk's sums.

        Parameters
        ----------
        parts : sequence of arrays
            One per total, of its shape, or of its shape with ``len(cols)`` entries on its
            axis ``axes[i]``.
        axes : sequence of int
            The output axis of each total.
        cols : int array, optional
            Where the parts' entries land on that axis (distinct indices; None: all of it).
        """
        if len(parts) != len(self.shapes):
            raise ValueError(f"{len(self.shapes)} parts were expected; {len(parts)} came.")
        flat = []
        for i, (part, axis) in enumerate(zip(parts, axes, strict=True)):
            part = np.asarray(part, np.float64)
            want = list(self.shapes[i])
            if cols is not None:
                want[axis] = len(cols)
            if part.shape != tuple(want):
                raise ValueError(
                    f"Part {i} of shape {tuple(want)} was expected; one of {part.shape} came."
                )
            flat.append(part.ravel())
        if flat:
            self.add_flat(np.concatenate(flat), self.positions(axes, cols))

    def add_flat(self, part, positions: np.ndarray | None = None) -> None:
        """Add one chunk's sums given as one flat array.

        Parameters
        ----------
        part : 1-D array
            The totals' entries in buffer order (``positions`` None), or those ``positions``
            names.
        positions : int array, optional
            Where each entry of ``part`` lands among the flat totals (distinct indices, from
            :meth:`positions`).
        """
        part = np.asarray(part, np.float64)
        expected = self.size if positions is None else positions.size
        if part.shape != (expected,):
            raise ValueError(
                f"A flat part of {expected} sums was expected; one of shape {part.shape} came."
            )
        if positions is None:
            s, e = two_sum(self._hi, part)
            self._hi[...] = s
            self._lo += e
        else:
            s, e = two_sum(self._hi[positions], part)
            self._hi[positions] = s
            self._lo[positions] += e

    def buffer(self) -> np.ndarray:
        """``hi`` then ``lo`` of every total, raveled into one float64 array (the wire format)."""
        return np.concatenate([self._hi, self._lo])

    @classmethod
    def from_buffer(cls, shapes: Sequence[Sequence[int]], buffer) -> CompensatedTotals:
        """The totals a :meth:`buffer` holds; raises ``ValueError`` if its size does not match
        ``shapes``."""
        out = cls(shapes)
        buffer = np.asarray(buffer, np.float64).ravel()
        if buffer.size != 2 * out.size:
            raise ValueError(
                f"A worker's buffer of sums holds {buffer.size} floats; totals of shapes "
                f"{out.shapes} need {2 * out.size} (hi and lo)."
            )
        out._hi[...] = buffer[: out.size]
        out._lo[...] = buffer[out.size :]
        return out

    def totals(self) -> list[np.ndarray]:
        """Each total rounded once to float64 (``hi + lo``)."""
        return [hi + lo for hi, lo in zip(self.hi, self.lo, strict=True)]


def reduce_worker_buffers(
    buffers: Mapping[Any, Any], shapes: Sequence[Sequence[int]]
) -> list[np.ndarray]:
    """Add the workers' :meth:`CompensatedTotals.buffer` s in address order and round once.

    Parameters
    ----------
    buffers : mapping worker address -> 1-D float64 array
    shapes : sequence of tuple of int
        The totals' shapes, as the workers used them.

    Returns
    -------
    list of float64 arrays, one per shape
    """
    out = CompensatedTotals(shapes)
    n = out.size
    for addr, buffer in buffers.items():
        if np.size(buffer) != 2 * n:
            raise ValueError(
                f"Worker {addr}'s buffer of sums holds {np.size(buffer)} floats; totals of "
                f"shapes {out.shapes} need {2 * n} (hi and lo)."
            )
    both = add_buffers([buffers[a] for a in sorted(buffers, key=str)], n)
    return CompensatedTotals.from_buffer(out.shapes, both).totals()


def add_buffers(buffers: Sequence[Any], n: int | None = None) -> np.ndarray:
    """Several :meth:`CompensatedTotals.buffer` s added in the order given, into one of them.

    Each buffer's ``hi`` is two-summed into the running ``hi``, its ``lo`` and the rounding
    error added to the running ``lo``: a few array operations a buffer, not a few per total. A
    relaying worker adds its group's buffers with it; the coordinator adds the workers' (or the
    groups').

    Parameters
    ----------
    buffers : sequence of 1-D float64 arrays of size ``2 n``
        ``hi`` then ``lo`` of the same totals.
    n : int, optional
        Floats in ``hi`` (by default half the first buffer).

    Returns
    -------
    1-D float64 array of size ``2 n``
    """
    if n is None:
        n = np.size(buffers[0]) // 2
    hi, lo = np.zeros(n), np.zeros(n)
    for buffer in buffers:
        buffer = np.asarray(buffer, np.float64).ravel()
        if buffer.size != 2 * n:
            raise ValueError(f"A buffer of sums holds {buffer.size} floats; expected {2 * n}.")
        hi, e = two_sum(hi, buffer[:n])
        lo += buffer[n:] + e
    return np.concatenate([hi, lo])
