"""MinHash-LSH near-duplicate removal (datasketch), keeping the first of each cluster in input order.

Shingle unit: WORD 5-grams of `instruction + " " + response` (lower-cased, whitespace words).
Why words, not characters: the other filters reason in whitespace words, and support replies share
long template phrases; character 5-grams rate two replies built from one template as near-duplicates
even when they answer different requests, while a one-word edit changes at most five word 5-grams.
Texts shorter than five words become one shingle of all their words.

The index is stateful and fed batch by batch in input order, so memory stays bounded by the index
(num_perm hash values per kept row), not by the corpus, and the result is deterministic: the same
input order and seed always keep the same rows.

Backends: `datasketch` (the reference: datasketch's MinHash values and MinHashLSH band layout, the seed's
library and hash family, computed a batch at a time by core/data/minhash.py with the same decisions as
one `MinHash` + `MinHashLSH.query`/`insert` per row) and `rensa` (Rust MinHash sketches and LSH index;
see benchmarks/). `rensa` keeps the seed's
query-then-insert order and datasketch's band layout (for 0.8 / 128: 9 bands of 13 rows; datasketch's
LSH reads only those 117 values, so rensa sketches exactly 117), so the two differ only in hash
family: rows far from the threshold get the same decision, pairs near it may fall either way
(measured kept-set agreement in the README's Performance section).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from itertools import islice

from llama_sft_dagster.core.data.filters import Decisions

BACKENDS = ("datasketch", "rensa")


def shingle_strings(text: str, n: int) -> list[str]:
    words = text.lower().split()
    if len(words) < n:
        return [" ".join(words)]
    # n staggered views of the word list zipped together: the n-grams without slicing per position
    return list(map(" ".join, zip(*(islice(words, i, None) for i in range(n)))))


def word_shingles(text: str, n: int) -> list[bytes]:
    return [s.encode("utf-8") for s in shingle_strings(text, n)]


# str.split() also splits on these ASCII separators; bytes.split() does not
_STR_ONLY_SEPARATORS = re.compile("[\x1c-\x1f]")


def byte_shingles(text: str, n: int) -> list[bytes]:
    """`word_shingles`, splitting the encoded text once when that splits the same way (ASCII text
    without the \\x1c-\\x1f separators) instead of encoding every shingle."""
    low = text.lower()
    if not low.isascii() or _STR_ONLY_SEPARATORS.search(low):
        return word_shingles(text, n)
    words = low.encode("ascii").split()
    if len(words) < n:
        return [b" ".join(words)]
    return list(map(b" ".join, zip(*(islice(words, i, None) for i in range(n)))))


def exact_key(instruction: str, response: str) -> bytes:
    return hashlib.blake2b(f"{instruction}\x00{response}".encode(), digest_size=16).digest()


class NearDuplicateIndex:
    """Keeps the first row of each near-duplicate cluster; says which kept row a drop duplicates.

    Exact duplicates (same instruction and response) are reported as `exact_duplicate`, the rest of
    the LSH hits as `near_duplicate`. A row whose LSH query returns a candidate is dropped, as the
    seed does (query, then insert only if nothing was found).
    """

    def __init__(
        self,
        threshold: float = 0.8,
        num_perm: int = 128,
        shingle_size: int = 5,
        seed: int = 1,
        backend: str = "datasketch",
    ):
        if backend not in BACKENDS:
            raise ValueError(f"dedup backend {backend!r} is not one of {BACKENDS}")
        from datasketch import MinHashLSH

        self.threshold, self.num_perm, self.shingle_size, self.seed = threshold, num_perm, shingle_size, seed
        self.backend = backend
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._exact: dict[bytes, str] = {}
        if backend == "datasketch":
            from llama_sft_dagster.core.data.minhash import BandIndex, BatchSketcher

            # datasketch's MinHash values and MinHashLSH candidates, a batch at a time (core/data/minhash.py)
            self._sketcher = BatchSketcher(num_perm, seed, self._lsh.b * self._lsh.r)
            self._bands = BandIndex(self._lsh.b)
        if backend == "rensa":
            from rensa import RMinHashLSH

            self._rensa_perm = self._lsh.b * self._lsh.r
            self._rensa = RMinHashLSH(threshold, self._rensa_perm, self._lsh.b)
            self._ids: list[str] = []  # rensa keys are ints: position in this list

    def _datasketch_keys(self, texts: Sequence[str]):
        from llama_sft_dagster.core.data.minhash import band_keys

        values = self._sketcher.sketch([byte_shingles(t, self.shingle_size) for t in texts])
        return list(zip(*band_keys(values, self._lsh.b, self._lsh.r))) if texts else []

    def _rensa_keys(self, texts: Sequence[str]):
        from rensa import RMinHash

        shingle_sets = [shingle_strings(t, self.shingle_size) for t in texts]
        return RMinHash.from_token_sets(shingle_sets, self._rensa_perm, self.seed) if texts else []

    def _query(self, key) -> list[str]:
        if self.backend == "datasketch":
            return self._bands.query(key)
        return [self._ids[k] for k in self._rensa.query(key)]

    def _insert(self, pid: str, key) -> None:
        if self.backend == "datasketch":
            self._bands.insert(pid, key)
            return
        self._rensa.insert(len(self._ids), key)
        self._ids.append(pid)

    def add_batch(self, pair_ids: Sequence[str], instructions: Sequence[str], responses: Sequence[str]) -> Decisions:
        out = Decisions()
        texts = [f"{i} {r}" for i, r in zip(instructions, responses)]
        keys = self._datasketch_keys(texts) if self.backend == "datasketch" else self._rensa_keys(texts)
        for pid, ins, resp, key in zip(pair_ids, instructions, responses, keys):
            exact = exact_key(ins, resp)
            if exact in self._exact:
                out.drop("exact_duplicate", f"duplicate_of={self._exact[exact]}")
                continue
            hits = self._query(key)
            if hits:
                out.drop("near_duplicate", f"duplicate_of={min(hits)}")
                continue
            self._insert(pid, key)
            self._exact[exact] = pid
            out.keep()
        return out
