"""The hash embedder: what a smoke test or a crash test relies on when it stands in for a model."""

from __future__ import annotations

import math
import os
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from llmops.indexing.embedding import HashEmbedder, load_embedder


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_hash_is_an_embedder_name_that_loads_no_model() -> None:
    embedder = load_embedder("hash")
    assert isinstance(embedder, HashEmbedder) and embedder.name == "hash-384"
    assert embedder.embed([]) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(), min_size=1, max_size=5))
def test_every_text_gets_a_unit_vector_of_the_same_size_every_time(texts: list[str]) -> None:
    embedder = HashEmbedder()
    vectors = embedder.embed(texts)
    assert len(vectors) == len(texts)
    for vector in vectors:
        assert len(vector) == 384
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-9)
    assert HashEmbedder().embed(texts) == vectors  # deterministic


def test_the_same_vectors_in_another_process_with_another_hash_seed_and_no_torch() -> None:
    # Python's own hash() of a str changes per process; a collection written by one process
    # and queried by another must see the same vectors.
    texts = ["Chunk ids derive from content.", "kill -9 then rerun"]
    code = ("import sys\n"
            "from llmops.indexing.embedding import load_embedder\n"
            f"print(repr(load_embedder('hash').embed({texts!r})))\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "12345"}).stdout.splitlines()
    assert eval(out[0]) == HashEmbedder().embed(texts)  # noqa: S307 - our own repr of floats
    assert out[1] == "False"


def test_different_texts_differ_and_shared_words_are_closer() -> None:
    a, b, c, d = HashEmbedder().embed([
        "update the index after editing the docs",
        "update the index after editing the prompts",
        "gateway latency and token limits",
        "!!!",
    ])
    assert len({tuple(v) for v in (a, b, c, d)}) == 4
    assert cosine(a, b) > 0.5 > cosine(a, c)
    assert HashEmbedder().embed(["Index UPDATE"]) == HashEmbedder().embed(["index update"])
    assert len(HashEmbedder(dims=16).embed(["x"])[0]) == 16
