"""The torch engine: the engine contract, dtypes, loading errors, memory-safe batching."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import pytest
import torch

from qwen3_rerank import ConfigurationError, EngineError, ModelLoadError, Reranker
from tests.core.engine_contract import DOCUMENTS, QUERY, EngineContract
from tests.core.os_threads import wait_until_os_thread_ends


class TestTorchEngineContract(EngineContract):
    @pytest.fixture
    def contract_reranker(self, reranker: Reranker) -> Reranker:
        return reranker


class TestPaddedReferenceContract(EngineContract):
    """The transformers (padded) path keeps passing the contract too."""

    @pytest.fixture(scope="class")
    def contract_reranker(self, tiny_model: Path) -> Iterator[Reranker]:
        with Reranker(tiny_model, device="cpu", dtype="float32", fast=False) as rr:
            assert rr.engine.attention == "padded"  # type: ignore[attr-defined]
            yield rr


def test_defaults_on_cpu(reranker: Reranker) -> None:
    engine = reranker.engine
    assert engine.attention == "grouped"  # type: ignore[attr-defined]
    assert engine.device.type == "cpu"  # type: ignore[attr-defined]
    assert engine.max_length == 8192  # type: ignore[attr-defined]
    assert (engine.yes_id, engine.no_id) == (9693, 2152)  # type: ignore[attr-defined]


def cpu_flags() -> set[str]:
    """The instruction-set flags Linux reports for this CPU."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="reads the CPU's flags on Linux")
def test_default_dtype_on_cpu_is_bf16_where_the_cpu_has_bf16_instructions(
    tiny_model: Path, reranker: Reranker
) -> None:
    """bf16 runs about twice as fast as fp32 on such a CPU, and is emulated (slower) elsewhere."""
    native = bool({"avx512_bf16", "amx_bf16"} & cpu_flags())
    with Reranker(tiny_model, device="cpu") as rr:
        assert rr.engine.dtype == (torch.bfloat16 if native else torch.float32)  # type: ignore[attr-defined]
        scores = rr.score(QUERY, DOCUMENTS)
    reference = reranker.score(QUERY, DOCUMENTS)  # the fixture's fp32
    assert max(abs(a - b) for a, b in zip(scores, reference, strict=True)) < 0.05


@pytest.mark.parametrize("dtype", ["bfloat16", torch.bfloat16, "float16"])
def test_half_precision_is_close_and_keeps_scores_apart(
    tiny_model: Path, reranker: Reranker, dtype: object
) -> None:
    """Scores come out of an fp32 head: no collapse into ties in 16-bit models."""
    reference = reranker.score(QUERY, DOCUMENTS)
    with Reranker(tiny_model, device="cpu", dtype=dtype) as rr:
        assert rr.engine.dtype != torch.float32  # type: ignore[attr-defined]
        scores = rr.score(QUERY, DOCUMENTS)
    assert max(abs(a - b) for a, b in zip(scores, reference, strict=True)) < 0.05
    assert len(set(scores)) == len(set(reference)) == len(DOCUMENTS)


def test_long_document_is_truncated_and_scored(tiny_model: Path) -> None:
    with Reranker(tiny_model, device="cpu", max_length=256) as rr:
        results = rr.rerank(QUERY, ["word " * 5000, "short"])
    by_index = {r.index: r for r in results}
    assert by_index[0].truncated
    assert not by_index[1].truncated
    assert 0.0 <= by_index[0].score <= 1.0
    assert by_index[0].document == "word " * 5000


def test_progress_reports_every_pair(tiny_model: Path) -> None:
    seen: list[int] = []
    with Reranker(tiny_model, device="cpu", max_batch_tokens=300) as rr:
        rr.rerank(QUERY, DOCUMENTS * 3, progress=seen.append)
    assert sum(seen) == len(DOCUMENTS) * 3
    assert len(seen) > 1  # several token-budget batches


def test_async_does_not_block_the_event_loop(tiny_model: Path) -> None:
    async def run() -> tuple[int, float]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        start = time.perf_counter()
        await rr.arerank(QUERY, [f"a passage about plants {i} " * 60 for i in range(40)])
        elapsed = time.perf_counter() - start
        task.cancel()
        return ticks, elapsed

    with Reranker(tiny_model, device="cpu", max_batch_tokens=512) as rr:
        ticks, elapsed = asyncio.run(run())
    assert elapsed > 0.05
    assert ticks >= 3  # the loop kept running while the model did


def test_closed_engine_raises(tiny_model: Path) -> None:
    rr = Reranker(tiny_model, device="cpu")
    with rr:
        assert rr.score(QUERY, ["x"])
    with pytest.raises(EngineError, match="closed"):
        rr.score(QUERY, ["x"])
    with pytest.raises(EngineError, match="closed"):
        asyncio.run(rr.ascore(QUERY, ["x"]))
    rr.close()  # closing twice is fine


def test_the_model_runs_on_the_engine_thread_whoever_calls(tiny_model: Path) -> None:
    """Calls from this thread, from pool threads and from an event loop all run the model on the
    engine's one thread (per-thread state such as CUDA graphs is made once), and score alike."""
    documents = [f"passage {i} about leaves and light" for i in range(12)]
    threads: set[str] = set()

    def note(pairs: int) -> None:
        threads.add(threading.current_thread().name)

    with Reranker(tiny_model, device="cpu", max_batch_tokens=300) as rr:
        here = rr.score(QUERY, documents, progress=note)
        with ThreadPoolExecutor(3) as pool:
            pooled = list(pool.map(lambda _: rr.score(QUERY, documents, progress=note), range(6)))
        awaited = asyncio.run(rr.ascore(QUERY, documents))
    assert len(threads) == 1
    assert threading.current_thread().name not in threads
    for scores in [*pooled, awaited]:
        assert scores == here


def test_an_interrupted_call_stops_at_its_next_batch(tiny_model: Path) -> None:
    """Ctrl-C while a long call is scoring raises in the caller, stops the call at its next
    batch (not after all of them) and leaves the engine ready for the next call."""
    documents = [f"passage {i} about leaves and light " * 8 for i in range(60)]
    batches: list[int] = []

    def interrupt_once(pairs: int) -> None:
        batches.append(pairs)
        if len(batches) == 1:
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)  # Ctrl-C

    with Reranker(tiny_model, device="cpu", max_batch_tokens=300) as rr:
        every: list[int] = []
        whole = rr.score(QUERY, documents, progress=every.append)
        with pytest.raises(KeyboardInterrupt):
            rr.score(QUERY, documents, progress=interrupt_once)
        assert rr.score(QUERY, documents) == whole  # queued behind the cancelled call
    assert len(every) > 5
    assert len(batches) < len(every)


def test_an_engine_thread_hands_its_graph_state_back_when_it_ends() -> None:
    """The CUDA graph state an engine thread sets up for itself is released exactly once when
    the thread ends (``close()``): afterwards only the references left elsewhere hold it, as
    they hold an object the thread never touched. torch 2.11 released it once more than it was
    given, which freed objects still in use and corrupted unrelated ones later in the process."""
    import gc
    import sys

    from torch._inductor import cudagraph_trees as trees

    from qwen3_rerank.engines.torch.compat import own_cudagraph_trees

    names = ("tree_manager_containers", "tree_manager_locks")
    # Each object held three times, so that one reference too few shows as a lower count
    # instead of freeing it (its memory reused, its count would mean nothing); the first is
    # the yardstick, held the same way and never in the thread.
    kept: list[object] = [{}] * 3

    def engine_thread() -> None:
        own_cudagraph_trees()
        for name in names:
            kept.extend([trees.get_obj(trees.local, name)] * 3)

    thread = threading.Thread(target=engine_thread)
    thread.start()
    thread.join()
    wait_until_os_thread_ends(thread)
    gc.collect()
    counts = [sys.getrefcount(obj) for obj in kept[::3]]
    assert len(counts) == 3
    assert counts[1:] == [counts[0]] * 2


def test_engine_threads_hand_graph_state_back_on_a_torch_whose_slot_takes_no_reference() -> None:
    """torch 2.11's thread-local slot takes no reference to what is put there but releases one
    when the thread ends. Simulated here on the installed torch, in a fresh process, because it
    matters most for the first engine thread: its own import of inductor's graph trees stashes
    their state in that thread's slot. Two engine threads, the first importing them: afterwards
    each thread's state is held only by the test, as an untouched object is. The version before
    the fix freed the first thread's state while in use (a segfault on an H100 with 2.11)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import collections, ctypes, gc, sys, threading
        import torch

        from tests.core.os_threads import wait_until_os_thread_ends

        real = torch._C._stash_obj_in_tls

        def takes_no_reference(name, obj):
            real(name, obj)
            ctypes.pythonapi.Py_DecRef(ctypes.py_object(obj))

        torch._C._stash_obj_in_tls = takes_no_reference
        from qwen3_rerank.engines.torch.compat import own_cudagraph_trees

        assert "torch._inductor.cudagraph_trees" not in sys.modules
        # each held three times: one reference too few lowers its count without freeing it
        kept = [{}] * 3 + [collections.defaultdict(threading.Lock)] * 3  # the yardsticks

        def engine_thread():
            own_cudagraph_trees()
            from torch._inductor import cudagraph_trees as trees
            kept.extend([trees.local.tree_manager_containers] * 3)
            kept.extend([trees.local.tree_manager_locks] * 3)

        for _ in range(2):
            thread = threading.Thread(target=engine_thread)
            thread.start()
            thread.join()
            wait_until_os_thread_ends(thread)
        gc.collect()
        print([sys.getrefcount(obj) for obj in kept[::3]])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],  # where `tests` imports from
    )
    assert done.returncode == 0, done.stderr[-2000:]
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts == [counts[0]] * 6


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"engine": "tensorrt"}, "unknown engine"),
        ({"device": "tpu"}, "device"),
        (
            {"device": "cuda:7"} if not torch.cuda.is_available() else {"device": "cuda:99"},
            "device",
        ),
        ({"device": "nonsense"}, "device"),
        ({"dtype": "int8"}, "dtype"),
        ({"dtype": torch.int64}, "dtype"),
        ({"max_length": 20}, "max_length"),
        ({"max_batch_tokens": 0}, "max_batch_tokens"),
        ({"max_batch_tokens": "many"}, "max_batch_tokens"),
        ({"max_memory": "lots"}, "max_memory"),
        ({"max_memory": 0}, "max_memory"),
        ({"max_memory": "20MiB"}, "raise max_memory or lower max_length"),
        ({"quantization": "int4"}, "unknown quantization"),
        ({"quantization": "fp8", "device": "cpu", "dtype": "float32"}, "bfloat16"),
        ({"quantization": "fp8", "dtype": "bfloat16", "fast": False}, "fast=True"),
    ],
)
def test_bad_configuration(tiny_model: Path, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        Reranker(tiny_model, **kwargs)  # type: ignore[arg-type]


def test_missing_model_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError):
        Reranker(tmp_path / "does-not-exist", device="cpu", local_files_only=True)
    with pytest.raises(ModelLoadError):
        Reranker(tmp_path, device="cpu")  # an empty folder


def test_model_folder_missing_weights(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "no-weights"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((tiny_model / name).read_bytes())
    with pytest.raises(ModelLoadError, match="causal LM"):
        Reranker(folder, device="cpu")


def test_model_without_yes_no_tokens_is_rejected(tiny_model: Path, tmp_path: Path) -> None:
    """A tokenizer lacking Qwen3's yes/no tokens cannot score: refuse before loading weights."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "hello": 1, "world": 2}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    folder = tmp_path / "not-qwen"
    PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]").save_pretrained(folder)
    config = json.loads((tiny_model / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="not a Qwen3 reranker"):
        Reranker(folder, device="cpu")


def test_user_built_engine_is_used_and_owned(tiny_model: Path) -> None:
    from qwen3_rerank.engines.torch import TorchEngine

    engine = TorchEngine(tiny_model, device="cpu")
    with Reranker(engine=engine) as rr:
        assert rr.engine is engine
        assert len(rr.score(QUERY, DOCUMENTS)) == len(DOCUMENTS)
    with pytest.raises(ConfigurationError, match="pass neither"):
        Reranker(tiny_model, engine=engine)
    with pytest.raises(ConfigurationError, match="Engine"):
        Reranker(engine=object())  # type: ignore[arg-type]


def test_out_of_memory_splits_the_batch(tiny_model: Path) -> None:
    """A batch that raises OutOfMemoryError is scored in halves, with unchanged results."""
    from qwen3_rerank.engines.torch import TorchEngine

    class OneRowAtATime(TorchEngine):
        """The GPU stand-in: refuses any forward pass of more than one row, as a full GPU would."""

        def forward(self, encoded: Any, pairs: list[tuple[int, int]]) -> torch.Tensor:
            if len(pairs) > 1:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return super().forward(encoded, pairs)

    engine = OneRowAtATime(tiny_model, device="cpu")
    budget = engine.max_batch_tokens
    with Reranker(engine=engine) as rr, Reranker(tiny_model, device="cpu") as plain:
        assert rr.score(QUERY, DOCUMENTS) == pytest.approx(plain.score(QUERY, DOCUMENTS), abs=1e-5)
    assert engine.max_batch_tokens < budget  # later calls plan smaller batches


def test_import_does_not_load_torch() -> None:
    import subprocess
    import sys

    code = "import sys, qwen3_rerank; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_max_memory_sizes_batches(tiny_model: Path) -> None:
    with (
        Reranker(tiny_model, device="cpu", max_memory="128MiB") as small,
        Reranker(tiny_model, device="cpu", max_memory="1GiB") as large,
    ):
        assert small.engine.max_batch_tokens < large.engine.max_batch_tokens  # type: ignore[attr-defined]
        assert small.engine.max_batch_tokens >= 8192  # type: ignore[attr-defined]
        assert small.score(QUERY, DOCUMENTS) == pytest.approx(
            large.score(QUERY, DOCUMENTS), abs=1e-5
        )


def test_non_finite_scores_are_an_engine_error(tiny_model: Path) -> None:
    """fp16 overflow shows up as NaN scores: reported as an EngineError naming the dtype."""
    from qwen3_rerank.engines.torch import TorchEngine

    class Overflowing(TorchEngine):
        def forward(self, encoded: Any, pairs: list[tuple[int, int]]) -> torch.Tensor:
            scores = super().forward(encoded, pairs)
            return torch.full_like(scores, float("nan"))

    with (
        Reranker(engine=Overflowing(tiny_model, device="cpu")) as rr,
        pytest.raises(EngineError, match="non-finite"),
    ):
        rr.score(QUERY, DOCUMENTS)


def test_compiled_path_matches_and_compiles_once(tiny_model: Path, reranker: Reranker) -> None:
    """compile=True (the CUDA default) scores like eager, and batches of other token counts
    reuse the one graph: a recompile per batch size would stall every new shape."""
    from torch._dynamo.utils import counters

    with Reranker(
        tiny_model, device="cpu", dtype="float32", compile=True, max_batch_tokens=300
    ) as rr:
        first = rr.score(QUERY, DOCUMENTS)
        graphs = counters["stats"]["unique_graphs"]
        both = rr.rerank_batch([QUERY, "a different query"], [DOCUMENTS[::-1], DOCUMENTS[:2]])
        assert counters["stats"]["unique_graphs"] == graphs
    assert first == pytest.approx(reranker.score(QUERY, DOCUMENTS), abs=1e-4)
    reversed_scores = [r.score for r in sorted(both[0], key=lambda r: r.index)]
    assert reversed_scores == pytest.approx(first[::-1], abs=1e-4)


def test_pieces_first_one_sized_apart() -> None:
    """Documents cut into pieces in order: the first piece of about ``first_chars``, the
    others of about ``chars``; each document in exactly one piece, an empty request too."""
    from qwen3_rerank.engines.base import ScoreRequest
    from qwen3_rerank.engines.torch.pipeline import pieces

    requests = [ScoreRequest("q", ["x" * 10] * 9, "i"), ScoreRequest("q", [], "i")]
    assert pieces(requests, 20, 40) == [(0, 0, 2), (0, 2, 6), (0, 6, 9), (1, 0, 0)]
    assert pieces(requests, 30) == [(0, 0, 3), (0, 3, 6), (0, 6, 9), (1, 0, 0)]


@pytest.mark.parametrize("tokenize", ["thread", "inline"])
def test_pieces_tokenized_apart_score_like_one_piece(tiny_model: Path, tokenize: str) -> None:
    """Requests tokenized in many small pieces (while earlier batches run, on the helper
    thread or between launches with a smaller first batch, as with CUDA graphs) give the
    scores and truncation flags of the padded reference, which tokenizes each request whole."""
    queries = [QUERY, "which city has a river", "bread"]
    docs = [DOCUMENTS, ["river " * 400, *DOCUMENTS[:3]], DOCUMENTS[::-1]]
    small = {"max_length": 200, "max_batch_tokens": 200, "tokenize": tokenize}
    with (
        Reranker(tiny_model, device="cpu", dtype="float32", **small) as pieces,  # type: ignore[arg-type]
        Reranker(tiny_model, device="cpu", dtype="float32", max_length=200, fast=False) as whole,
    ):
        assert pieces.engine.tokenize == tokenize  # type: ignore[attr-defined]
        got = pieces.rerank_batch(queries, docs)
        want = whole.rerank_batch(queries, docs)
    for g, w in zip(got, want, strict=True):
        assert [(r.index, r.truncated) for r in g] == [(r.index, r.truncated) for r in w]
        assert [r.score for r in g] == pytest.approx([r.score for r in w], abs=1e-4)
    assert [r.truncated for r in got[1] if r.index == 0] == [True]


def test_first_piece_is_launched_as_the_first_batch(tiny_model: Path) -> None:
    """Tokenizing between launches, the first batch is the first piece's documents even when
    they fill less than the first batch's share of the budget (here at ~6 characters per
    token): waiting for the next piece to fill it would leave the GPU idle meanwhile."""
    from qwen3_rerank.engines.base import ScoreRequest
    from qwen3_rerank.engines.torch.pipeline import CHARS_PER_TOKEN, FIRST_BATCH, pieces

    documents = [f"{'river ' * 50}{i}" for i in range(40)]  # distinct: none scored once for two
    batches: list[int] = []
    with Reranker(tiny_model, device="cpu", max_batch_tokens=2000, tokenize="inline") as rr:
        rr.score(QUERY, documents, progress=batches.append)
    chars = 2000 * CHARS_PER_TOKEN
    requests = [ScoreRequest(QUERY, documents, "i")]
    first_piece = pieces(requests, int(chars * FIRST_BATCH), chars)[0]
    assert 0 < first_piece[2] < 40
    assert batches[0] == first_piece[2]  # progress reports each batch as it is collected
    assert sum(batches) == 40


def test_fp8_projections_score_close_to_the_reference(tiny_model: Path, reranker: Reranker) -> None:
    docs = [f"{DOCUMENTS[i % len(DOCUMENTS)]} {'more words ' * i}" for i in range(12)]
    want = reranker.score(QUERY, docs)
    with (
        Reranker(tiny_model, device="cpu", dtype="bfloat16", quantization="fp8") as fp8,
        Reranker(tiny_model, device="cpu", dtype="bfloat16") as bf16,
    ):
        got = fp8.score(QUERY, docs)
        plain = bf16.score(QUERY, docs)
        layers = cast(Any, fp8.engine).packed.layers
        plain_bytes = cast(Any, bf16.engine).weight_bytes
        fp8_bytes = cast(Any, fp8.engine).weight_bytes
    qkv, qkv_scale = layers[0].qkv  # q/k/v held in FP8 with one scale per output row
    assert qkv.dtype == torch.float8_e4m3fn
    assert qkv_scale.shape == (1, qkv.shape[0])
    assert got != plain  # the FP8 matmuls ran
    assert max(abs(a - b) for a, b in zip(got, want, strict=True)) < 0.05
    projections = sum(w[0].numel() for layer in layers for w in layer if isinstance(w, tuple))
    assert plain_bytes - fp8_bytes >= 0.9 * projections  # one byte saved per weight
