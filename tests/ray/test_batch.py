"""Ray Data batch scoring on a real local Ray cluster with 2 CPU actors and the tiny model."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import ray.data

from qwen3_rerank import InvalidInputError, Reranker
from qwen3_rerank.ray import RerankBatches, rerank_dataset

QUERIES = [f"question number {q} about plants" for q in range(40)]
WORDS = ["leaf", "sun", "water", "root", "stone", "river", "cloud", "bread", "market", "light"]
DOCS_PER_QUERY = 75
ACTOR_CPUS = 0.5  # of the cluster's 2, so read tasks can still run beside 2 actors


def pairs(seed: int) -> list[dict[str, Any]]:
    """40 queries x 75 documents, rows shuffled so one query's rows are spread out."""
    rng = random.Random(seed)
    rows = [
        {"query": q, "document": " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 40)))}
        for q in QUERIES
        for _ in range(DOCS_PER_QUERY)
    ]
    rng.shuffle(rows)
    return [{"id": f"pair-{i}", **row} for i, row in enumerate(rows)]


def in_process_scores(reranker: Reranker, rows: list[dict[str, Any]]) -> dict[str, float]:
    by_query: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_query.setdefault(row["query"], []).append(row)
    want = {}
    for query, group in by_query.items():
        scores = reranker.score(query, [r["document"] for r in group])
        want.update({r["id"]: s for r, s in zip(group, scores, strict=True)})
    return want


def test_parquet_pairs_on_two_actors_match_the_in_process_engine(
    ray_address: str, tiny_model: Path, reranker: Reranker, tmp_path: Path
) -> None:
    rows = pairs(seed=1)
    rows[7]["query"] = "   "  # bad rows are reported, not fatal
    rows[11]["document"] = None
    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=500)

    scored = rerank_dataset(
        ray.data.read_parquet(str(path), override_num_blocks=6),
        tiny_model,
        concurrency=2,
        batch_size=256,
        device="cpu",
        dtype="float32",
        num_cpus=ACTOR_CPUS,
    ).take_all()

    assert [r["id"] for r in scored] == [r["id"] for r in rows]  # each input once, in order
    assert [(r["query"], r["document"]) for r in scored] == [
        (r["query"], r["document"]) for r in rows
    ]
    assert np.isnan(scored[7]["score"])
    assert scored[7]["error"] == "query must not be empty or whitespace only"
    assert np.isnan(scored[11]["score"])
    assert scored[11]["error"] == "document must be a str, got NoneType"
    good = [r for i, r in enumerate(rows) if i not in (7, 11)]
    want = in_process_scores(reranker, good)
    got = {r["id"]: r["score"] for r in scored if r["error"] is None}
    assert got.keys() == want.keys()
    assert [got[k] for k in want] == pytest.approx([want[k] for k in want], abs=1e-5)


def test_strict_mode_fails_the_job_on_a_bad_row_with_one_clear_error(
    ray_address: str, tiny_model: Path
) -> None:
    rows = [{"query": "plants", "document": "leaf"}, {"query": "", "document": "sun"}]
    scored = rerank_dataset(
        ray.data.from_items(rows),
        tiny_model,
        device="cpu",
        dtype="float32",
        num_cpus=ACTOR_CPUS,
        strict=True,
    )
    with pytest.raises(InvalidInputError, match=r"bad row \(query=''\): query must not be empty"):
        scored.materialize()


class DiesOnce(RerankBatches):
    """Fault injection: the actor holding the marked row exits, once (a file remembers it)."""

    def __init__(self, *args: Any, flag: str, marker: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flag, self.marker = flag, marker

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.marker in batch["id"] and not os.path.exists(self.flag):
            Path(self.flag).touch()
            os._exit(1)
        return super().__call__(batch)


def test_an_actor_killed_mid_job_loses_and_duplicates_nothing(
    ray_address: str, tiny_model: Path, reranker: Reranker, tmp_path: Path
) -> None:
    rows = pairs(seed=2)[:1200]
    marker = rows[700]["id"]
    flag = tmp_path / "died"
    scored = rerank_dataset(
        ray.data.from_items(rows, override_num_blocks=12),
        tiny_model,
        concurrency=2,
        batch_size=100,
        device="cpu",
        dtype="float32",
        num_cpus=ACTOR_CPUS,
        batches=DiesOnce,
        flag=str(flag),
        marker=marker,
    ).take_all()

    assert flag.exists()  # an actor did die holding the marked batch
    assert [r["id"] for r in scored] == [r["id"] for r in rows]
    want = in_process_scores(reranker, rows)
    assert [r["score"] for r in scored] == pytest.approx([want[r["id"]] for r in rows], abs=1e-5)
