"""MinHash-LSH near-duplicate removal (datasketch), keeping the first of each cluster in input order.

Shingle unit: WORD 5-grams of `instruction + " " + response` (lower-cased, whitespace words).
Why words, not characters: the other filters reason in whitespace words, and support replies share
long template phrases; character 5-grams rate two replies built from one template as near-duplicates
even when they answer different requests, while a one-word edit changes at most five word 5-grams.
Texts shorter than five words become one shingle of all their words.

The index is stateful and fed batch by batch in input order, so memory stays bounded by the index
(num_perm hash values per kept row), not by the corpus, and the result is deterministic: the same
input order and seed always keep the same rows.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

from llama_sft_dagster.core.filters import Decisions

BACKENDS = ("datasketch",)


def word_shingles(text: str, n: int) -> list[bytes]:
    words = text.lower().split()
    if len(words) < n:
        return [" ".join(words).encode("utf-8")]
    return [" ".join(words[i : i + n]).encode("utf-8") for i in range(len(words) - n + 1)]


def exact_key(instruction: str, response: str) -> bytes:
    return hashlib.blake2b(f"{instruction}\x00{response}".encode("utf-8"), digest_size=16).digest()


class NearDuplicateIndex:
    """Keeps the first row of each near-duplicate cluster; says which kept row a drop duplicates.

    Exact duplicates (same instruction and response) are reported as `exact_duplicate`, the rest of
    the LSH hits as `near_duplicate`. A row whose LSH query returns a candidate is dropped, as the
    seed does (query, then insert only if nothing was found).
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, shingle_size: int = 5, seed: int = 1,
                 backend: str = "datasketch"):
        if backend not in BACKENDS:
            raise ValueError(f"dedup backend {backend!r} is not one of {BACKENDS}")
        from datasketch import MinHashLSH

        self.threshold, self.num_perm, self.shingle_size, self.seed = threshold, num_perm, shingle_size, seed
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._exact: dict[bytes, str] = {}

    def _minhashes(self, texts: Sequence[str]):
        from datasketch import MinHash

        shingle_sets = [word_shingles(t, self.shingle_size) for t in texts]
        # bulk() hashes all sets with one permutation table: same values as one MinHash per row
        return MinHash.bulk(shingle_sets, num_perm=self.num_perm, seed=self.seed)

    def add_batch(self, pair_ids: Sequence[str], instructions: Sequence[str], responses: Sequence[str]) -> Decisions:
        out = Decisions()
        texts = [f"{i} {r}" for i, r in zip(instructions, responses)]
        for pid, ins, resp, mh in zip(pair_ids, instructions, responses, self._minhashes(texts)):
            key = exact_key(ins, resp)
            if key in self._exact:
                out.drop("exact_duplicate", f"duplicate_of={self._exact[key]}")
                continue
            hits = self._lsh.query(mh)
            if hits:
                out.drop("near_duplicate", f"duplicate_of={min(hits)}")
                continue
            self._lsh.insert(pid, mh)
            self._exact[key] = pid
            out.keep()
        return out
