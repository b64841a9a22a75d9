"""Fingerprints of rows and keys, and the compact in-memory index of a sync's snapshot.

A run compares every model row with what Amplitude last acknowledged. Doing that per row in
Python (JSON, canonical text, a cryptographic digest) costs microseconds a row, so two cheaper
fingerprints go first: a 64-bit hash of each key and a 64-bit hash of the row's raw values. A
row whose raw hash equals the stored one is unchanged; any other row takes the exact path
(values to JSON, digest of the canonical text, field-level diff). The raw hash is only a cache:
a stale or colliding one sends a row down the exact path, never past it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import xxhash

NO_RAW = 0  # stored when the raw hash of a row is not known (rows acknowledged before it existed)
_I64 = 1 << 64


def _signed(value: int) -> int:
    # SQLite integers are signed 64-bit.
    return value - _I64 if value >= 1 << 63 else value


def key_hash(key: str) -> int:
    """A 64-bit hash of an Amplitude id, for the compact index."""
    return _signed(_xxh(key.encode("utf-8")))


_xxh = xxhash.xxh3_64_intdigest


def raw_hash(layout: bytes, values: tuple[Any, ...]) -> int:
    """A 64-bit hash of a row's raw values under one column layout (never NO_RAW)."""
    # repr() is exact for the values drivers return (str, int, Decimal, datetime, bytes...):
    # equal reprs mean equal values, so the same row always hashes the same way.
    value = _signed(_xxh(layout + repr(values).encode("utf-8", "surrogatepass")))
    return value or 1


def digest(key: str, text: str) -> bytes:
    """The exact fingerprint of a key's canonical fields (collision-safe, 128 bits)."""
    return hashlib.blake2b(f"{key}\x00{text}".encode(), digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class SnapshotIndex:
    """Every acknowledged key as sorted arrays: key hash, raw hash, digest (32 bytes a key)."""

    hashes: np.ndarray  # int64, sorted
    raws: np.ndarray  # int64
    digests: np.ndarray  # |S16

    @classmethod
    def build(cls, entries: Iterable[tuple[int, int | None, bytes]]) -> SnapshotIndex:
        """From (key hash, raw hash or None, digest) triples in any order."""
        rows = list(entries)
        hashes = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        raws = np.fromiter((r[1] or NO_RAW for r in rows), dtype=np.int64, count=len(rows))
        digests = np.array([r[2] for r in rows], dtype="S16") if rows else np.empty(0, dtype="S16")
        order = np.argsort(hashes, kind="stable")
        return cls(hashes[order], raws[order], digests[order])

    @classmethod
    def from_parts(cls, hashes: np.ndarray, raws: np.ndarray, digests: np.ndarray) -> SnapshotIndex:
        """From unsorted arrays (as read from the store in pieces), reordered one at a time."""
        order = np.argsort(hashes, kind="stable")
        hashes = hashes[order]  # each reassignment frees the unsorted array before the next copy
        raws = raws[order]
        digests = digests[order]
        return cls(hashes, raws, digests)

    def overlaid(self, entries: list[tuple[int, int, bytes]]) -> SnapshotIndex:
        """This index with `entries` (key hash, raw hash, digest) replacing or adding keys."""
        if not entries:
            return self
        extra = SnapshotIndex.build(entries)
        keep = ~np.isin(self.hashes, extra.hashes)
        return SnapshotIndex.from_parts(
            np.concatenate([self.hashes[keep], extra.hashes]),
            np.concatenate([self.raws[keep], extra.raws]),
            np.concatenate([self.digests[keep], extra.digests]),
        )

    def __len__(self) -> int:
        return len(self.hashes)

    def find(self, hashes: np.ndarray) -> np.ndarray:
        """Position of each key hash in the index, or -1."""
        if len(self.hashes) == 0:
            return np.full(len(hashes), -1, dtype=np.int64)
        pos = np.searchsorted(self.hashes, hashes)
        clipped = np.minimum(pos, len(self.hashes) - 1)
        return np.where(self.hashes[clipped] == hashes, clipped, -1)

    def missing_from(self, seen: np.ndarray) -> int:
        """How many indexed keys are not among the `seen` key hashes (sorted, unique)."""
        if len(seen) == 0:
            return len(self.hashes)
        # Both sides are sorted: a binary search per key needs no temporary copies of either.
        pos = np.minimum(np.searchsorted(seen, self.hashes), len(seen) - 1)
        return int(np.count_nonzero(seen[pos] != self.hashes))
