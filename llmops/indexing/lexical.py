"""Lexical search (BM25) over a collection's chunks, and reciprocal rank fusion with dense search.

Small sentence embedders miss the exact words a technical question turns on
(a command, a flag, a table name); BM25 finds them. Hybrid search fuses both
rankings by reciprocal rank (Cormack et al., 2009), which needs no score
calibration between the two. The BM25 index is built in memory from the
collection's texts and rebuilt when the collection changes; it suits
collections up to about a hundred thousand chunks per process.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

__all__ = ["BM25Index", "reciprocal_rank_fusion", "tokenize"]

_WORD = re.compile(r"[a-z0-9_]+")
# function words that carry no lexical signal in questions
_STOPWORDS = frozenset(
    "a an and are as at be by can do does for from how i if in into is it its me my of on or "
    "so that the their then there these this to was what when where which who why will with "
    "you your".split())


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (letters, digits, ``_``), stop words left out."""
    return [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]


class BM25Index:
    """Okapi BM25 over a fixed list of texts (``k1``, ``b`` as in Robertson & Zaragoza, 2009)."""

    def __init__(self, texts: Sequence[str], k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.docs = [Counter(tokenize(t)) for t in texts]
        self.lengths = [sum(d.values()) for d in self.docs]
        self.avg_length = (sum(self.lengths) / len(self.docs)) if self.docs else 0.0
        df: Counter[str] = Counter(w for d in self.docs for w in d)
        n = len(self.docs)
        self.idf = {w: math.log(1 + (n - f + 0.5) / (f + 0.5)) for w, f in df.items()}

    def scores(self, query: str) -> list[float]:
        terms = [w for w in set(tokenize(query)) if w in self.idf]
        out = []
        for doc, length in zip(self.docs, self.lengths, strict=True):
            norm = self.k1 * (1 - self.b + self.b * length / (self.avg_length or 1.0))
            out.append(sum(self.idf[w] * doc[w] * (self.k1 + 1) / (doc[w] + norm)
                           for w in terms if w in doc))
        return out

    def top(self, query: str, n: int) -> list[int]:
        """Indexes of the ``n`` best texts with a score above 0, best first."""
        scores = self.scores(query)
        ranked = sorted((i for i, s in enumerate(scores) if s > 0), key=lambda i: (-scores[i], i))
        return ranked[:n]


def reciprocal_rank_fusion(rankings: Iterable[Sequence[str]], k: int = 60) -> list[str]:
    """Ids ordered by the sum of ``1 / (k + rank)`` over the rankings (ties: first seen first)."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking):
            fused[key] = fused.get(key, 0.0) + 1.0 / (k + rank + 1)
    return sorted(fused, key=lambda key: -fused[key])
