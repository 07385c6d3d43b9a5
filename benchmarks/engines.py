"""The engines the benchmark compares, each behind ``load(model) -> Runner``.

A runner scores a whole workload ``per_query`` (one call per query) or ``at_once`` (one call
for everything, where the engine has such a call) and returns the scores, input order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from qwen3_rerank import Reranker
from qwen3_rerank.prompt import DEFAULT_INSTRUCTION, PREFIX, SUFFIX

Scores = list[list[float]]


class Runner:
    """Scores queries with their documents; ``at_once`` is ``None`` where not offered."""

    def __init__(
        self,
        per_query: Callable[[str, list[str]], list[float]],
        at_once: Callable[[list[str], list[list[str]]], Scores] | None = None,
        close: Callable[[], None] = lambda: None,
        in_process_torch: bool = True,
        info: dict[str, Any] | None = None,
        engine: Any = None,
    ) -> None:
        self.per_query = per_query
        self.at_once = at_once
        self.close = close
        self.in_process_torch = in_process_torch
        self.info = info or {}
        self.engine = engine  # the object scoring underneath (vllm.LLM, ...), for probes


def _hf(model: str) -> tuple[Any, Any, int, int]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left")
    lm = AutoModelForCausalLM.from_pretrained(
        model, dtype=torch.bfloat16, attn_implementation="sdpa"
    )
    lm = lm.to("cuda").eval()
    return (
        tokenizer,
        lm,
        tokenizer.convert_tokens_to_ids("yes"),
        tokenizer.convert_tokens_to_ids("no"),
    )


def _card_inputs(tokenizer: Any, query: str, docs: list[str]) -> list[list[int]]:
    prefix = tokenizer.encode(PREFIX, add_special_tokens=False)
    suffix = tokenizer.encode(SUFFIX, add_special_tokens=False)
    bodies = [f"<Instruct>: {DEFAULT_INSTRUCTION}\n<Query>: {query}\n<Document>: {d}" for d in docs]
    ids = tokenizer(
        bodies,
        padding=False,
        truncation="longest_first",
        return_attention_mask=False,
        max_length=8192 - len(prefix) - len(suffix),
    )["input_ids"]
    return [prefix + x + suffix for x in ids]


def load_card(model: str) -> Runner:
    """The model card's code: one left-padded batch per query, full-vocabulary logits."""
    tokenizer, lm, yes, no = _hf(model)

    @torch.inference_mode()
    def per_query(query: str, docs: list[str]) -> list[float]:
        inputs = tokenizer.pad(
            {"input_ids": _card_inputs(tokenizer, query, docs)}, padding=True, return_tensors="pt"
        ).to("cuda")
        logits = lm(**inputs).logits[:, -1, :]
        pair = torch.stack([logits[:, no], logits[:, yes]], dim=1).float()
        return torch.log_softmax(pair, dim=1)[:, 1].exp().tolist()

    return Runner(per_query, close=lambda: None)


def load_transformers(model: str) -> Runner:
    """Careful transformers: length-sorted batches of 32, logits_to_keep=1, SDPA."""
    tokenizer, lm, yes, no = _hf(model)

    @torch.inference_mode()
    def per_query(query: str, docs: list[str]) -> list[float]:
        ids = _card_inputs(tokenizer, query, docs)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        scores = [0.0] * len(ids)
        for start in range(0, len(order), 32):
            chunk = order[start : start + 32]
            inputs = tokenizer.pad(
                {"input_ids": [ids[i] for i in chunk]}, padding=True, return_tensors="pt"
            ).to("cuda")
            logits = lm(**inputs, logits_to_keep=1).logits[:, -1, :]
            pair = torch.stack([logits[:, no], logits[:, yes]], dim=1).float()
            for i, s in zip(chunk, torch.softmax(pair, dim=1)[:, 1].tolist(), strict=True):
                scores[i] = s
        return scores

    return Runner(per_query)


def batch_scores(rr: Reranker, queries: list[str], docs: list[list[str]]) -> Scores:
    """Scores of every query's documents in one ``rerank_batch`` call, input order."""
    return [
        [r.score for r in sorted(res, key=lambda r: r.index)]
        for res in rr.rerank_batch(queries, docs)
    ]


def _reranker_runner(rr: Reranker, in_process_torch: bool, info: dict[str, Any]) -> Runner:
    return Runner(
        lambda q, d: rr.score(q, d),
        lambda qs, ds: batch_scores(rr, qs, ds),
        rr.close,
        in_process_torch=in_process_torch,
        info=info,
    )


def load_ours(model: str, **options: Any) -> Runner:
    """qwen3-rerank's torch engine (packed, prefix-sharing)."""
    rr = Reranker(model, engine="torch", device="cuda", **options)
    engine: Any = rr.engine
    info = {"attention": engine.attention, "max_batch_tokens": engine.max_batch_tokens}
    return _reranker_runner(rr, True, info)


def load_vllm(model: str, **options: Any) -> Runner:
    """vLLM's pooling runner with the official Qwen3-Reranker conversion; template applied here."""
    from vllm import LLM

    llm = LLM(
        model=model,
        runner="pooling",
        hf_overrides={
            "architectures": ["Qwen3ForSequenceClassification"],
            "classifier_from_token": ["no", "yes"],
            "is_original_qwen3_reranker": True,
        },
        **options,
    )

    def query_text(q: str) -> str:
        return f"{PREFIX}<Instruct>: {DEFAULT_INSTRUCTION}\n<Query>: {q}\n"

    def doc_text(d: str) -> str:
        return f"<Document>: {d}{SUFFIX}"

    def per_query(query: str, docs: list[str]) -> list[float]:
        out = llm.score(query_text(query), [doc_text(d) for d in docs], use_tqdm=False)
        return [o.outputs.score for o in out]

    def at_once(queries: list[str], docs: list[list[str]]) -> Scores:
        left = [query_text(q) for q, ds in zip(queries, docs, strict=True) for _ in ds]
        right = [doc_text(d) for ds in docs for d in ds]
        flat = [o.outputs.score for o in llm.score(left, right, use_tqdm=False)]
        out, start = [], 0
        for ds in docs:
            out.append(flat[start : start + len(ds)])
            start += len(ds)
        return out

    def close() -> None:
        nonlocal llm
        del llm

    return Runner(per_query, at_once, close, in_process_torch=False, engine=llm)


def load_vllm_engine(model: str, **options: Any) -> Runner:
    """qwen3-rerank's vLLM engine (``Reranker(engine="vllm")``) with its reranking defaults."""
    rr = Reranker(model, engine="vllm", **options)
    return _reranker_runner(rr, False, {"options": options})


ENGINES: dict[str, Callable[[str], Runner]] = {
    "card": load_card,
    "transformers": load_transformers,
    "vllm": load_vllm,
    # 1 GiB of KV cache holds one 9k-token sequence: cap the model length at our max_length
    "vllm_kv1g": lambda m: load_vllm(m, kv_cache_memory_bytes=2**30, max_model_len=8192),
    # our vLLM engine with its defaults: a 2 GiB KV cache in run-2026-11-21 (the row that
    # moved the default), 3 GiB since, so the same setting as vllm_engine_kv3g from then on
    "vllm_engine": load_vllm_engine,
    "vllm_engine_kv3g": lambda m: load_vllm_engine(m, kv_cache_memory_bytes=3 * 2**30),
    "ours": load_ours,
    "ours_1.5gib": lambda m: load_ours(m, max_memory="1.5GiB"),
    "ours_fp8": lambda m: load_ours(m, quantization="fp8"),
    "reference_fp32": lambda m: load_ours(m, fast=False, dtype="float32"),
}
