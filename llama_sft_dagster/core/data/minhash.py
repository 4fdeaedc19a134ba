"""datasketch's MinHash values and MinHashLSH buckets, computed a batch at a time.

The seed builds one `datasketch.MinHash` per row (SHA-1 of each shingle, first 4 bytes little-endian,
then datasketch 2's default "affine32" scheme: the MurmurHash3 finalizer, then per permutation
`a * h + b` in uint32 arithmetic; the minimum over the shingles) and asks a `MinHashLSH` for rows sharing
any band. This module computes the same values for every row of a batch in a few numpy calls
(bit-identical: tests/unit/test_perf_equivalence.py):

- the permutation parameters and the finalizer are datasketch's own (`MinHash(num_perm, seed)`);
  MinHashes of the pre-2.0 "legacy" scheme (`(a * h + b) mod (2**61 - 1)`) are computed too, the
  modulo as one fold `(x & p) + (x >> 61)` and one conditional subtraction;
- each distinct shingle of a batch is hashed once;
- only the values the LSH bands read are computed (b * r of num_perm: 117 of 128 for 0.8 / 128);
- chunks of rows run on a thread pool: numpy releases the GIL, so the permutations use every core;
- `BandIndex` keeps, per band, the rows whose band values are equal: the candidates `MinHashLSH.query`
  returns, without its per-row storage layer.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from llama_sft_dagster.core.data.arrays import binary_array

MERSENNE_PRIME = np.uint64((1 << 61) - 1)  # datasketch.minhash._mersenne_prime
MAX_HASH = np.uint64((1 << 32) - 1)  # datasketch.minhash._max_hash
SHIFT = np.uint64(61)
CHUNK_SHINGLES = 16_384  # rows are grouped so a chunk's (shingles x permutations) array stays ~15 MB


def sha1_hash32(shingles: Sequence[bytes]) -> np.ndarray:
    """datasketch.hashfunc.sha1_hash32 of every shingle, as uint64."""
    sha1 = hashlib.sha1
    return np.fromiter(
        (int.from_bytes(sha1(s).digest()[:4], "little") for s in shingles), dtype=np.uint64, count=len(shingles)
    )


class BatchSketcher:
    """MinHash values (the first `n_values` of datasketch's `num_perm` permutations) for many rows."""

    def __init__(self, num_perm: int, seed: int, n_values: int, threads: int | None = None, scheme: str | None = None):
        from datasketch import MinHash

        ref = MinHash(num_perm=num_perm, seed=seed, scheme=scheme)
        if ref.scheme not in ("affine32", "legacy"):  # affine64 hashes shingles with sha1_hash64
            raise ValueError(f"MinHash scheme {ref.scheme!r} is not supported by the batch sketcher")
        self.scheme = ref.scheme
        a, b = ref.permutations
        self.a, self.b = np.ascontiguousarray(a[:n_values]), np.ascontiguousarray(b[:n_values])
        self.threads = threads or os.cpu_count() or 1

    def _chunk(self, hv: np.ndarray, starts: np.ndarray) -> np.ndarray:
        if self.scheme == "legacy":
            x = hv.astype(np.uint64)[:, None] * self.a + self.b  # uint64 wrap-around, as datasketch's
            y = (x & MERSENNE_PRIME) + (x >> SHIFT)
            y -= MERSENNE_PRIME * (y >= MERSENNE_PRIME)
            y &= MAX_HASH
        else:
            from datasketch.minhash import _fmix

            y = _fmix(hv.astype(np.uint32), 32)[:, None] * self.a + self.b  # uint32 wrap-around
        return np.minimum.reduceat(y, starts, axis=0)

    def sketch(self, shingle_sets: Sequence[Sequence[bytes]]) -> np.ndarray:
        """(rows, n_values) of the scheme's dtype. Every row needs at least one shingle."""
        if not shingle_sets:
            return np.empty((0, len(self.a)), dtype=self.a.dtype)
        sizes = np.fromiter((len(s) for s in shingle_sets), dtype=np.int64, count=len(shingle_sets))
        if (sizes == 0).any():
            raise ValueError("every row needs at least one shingle")
        # each distinct shingle of the batch is hashed once: template phrases repeat across rows, and
        # Arrow's dictionary encoding finds the distinct ones in C++
        encoded = binary_array([s for row in shingle_sets for s in row]).dictionary_encode()
        idx = encoded.indices  # int32; read from its buffer (`to_numpy` would import pandas, see arrays.py)
        codes = np.frombuffer(idx.buffers()[1], dtype=np.int32, count=len(idx) + idx.offset)[idx.offset :]
        hv = sha1_hash32(encoded.dictionary.to_pylist())[codes]
        ends = np.cumsum(sizes)
        starts = ends - sizes
        # cut between rows every ~CHUNK_SHINGLES shingles
        cuts = np.searchsorted(ends, np.arange(CHUNK_SHINGLES, ends[-1], CHUNK_SHINGLES), side="left") + 1
        bounds = [0, *sorted(set(cuts.tolist()) - {0, len(sizes)}), len(sizes)]
        jobs = [(hv[starts[r0] : ends[r1 - 1]], starts[r0:r1] - starts[r0]) for r0, r1 in zip(bounds, bounds[1:])]
        if len(jobs) == 1 or self.threads == 1:
            parts = [self._chunk(*job) for job in jobs]
        else:
            with ThreadPoolExecutor(self.threads) as pool:
                parts = list(pool.map(lambda job: self._chunk(*job), jobs))
        return np.concatenate(parts)


def band_keys(values: np.ndarray, bands: int, rows: int) -> list[list[bytes]]:
    """Per band, one bytes key per row: equal keys <=> equal band values (datasketch hashes the band's
    byte-swapped bytes; any injective encoding selects the same candidates)."""
    out = []
    for j in range(bands):
        band = np.ascontiguousarray(values[:, j * rows : (j + 1) * rows])
        out.append(band.view(np.dtype((np.void, band.dtype.itemsize * rows))).ravel().tolist())
    return out


class BandIndex:
    """LSH buckets: per band, band key -> ids of the inserted rows with that key."""

    def __init__(self, bands: int):
        self.tables: list[dict[bytes, list[str]]] = [{} for _ in range(bands)]

    def query(self, keys: Sequence[bytes]) -> set[str]:
        hits: set[str] = set()
        for table, key in zip(self.tables, keys):
            ids = table.get(key)
            if ids:
                hits.update(ids)
        return hits

    def insert(self, pid: str, keys: Sequence[bytes]) -> None:
        for table, key in zip(self.tables, keys):
            ids = table.get(key)
            if ids is None:
                table[key] = [pid]
            else:
                ids.append(pid)
