"""``Reranker``: the one object that integrations, the CLI and users call.

It validates arguments once, picks and owns an engine, and turns per-document scores into
sorted :class:`RerankResult` lists with ``top_n`` and ``score_threshold`` applied.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from . import engines
from .engines.base import Engine, Progress, ScoredDocuments, ScoreRequest
from .errors import ConfigurationError, InvalidInputError
from .prompt import DEFAULT_INSTRUCTION
from .results import RerankResult
from .unique_pairs import unique_pairs

__all__ = ["Reranker", "rank"]


class Reranker:
    """Scores and ranks documents against a query with a Qwen3-Reranker model.

    Args:
        model: A Hub id (``"Qwen/Qwen3-Reranker-0.6B"``) or a local folder.
        engine: ``"auto"`` (the torch engine; vLLM when given ``llm``), ``"torch"``,
            ``"vllm"``, ``"remote"`` (see :meth:`remote`), another name registered with
            :func:`qwen3_rerank.engines.register`, or an engine object you built (anything
            with the ``Engine`` protocol); then ``model`` must be ``None``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``None`` (CUDA when available). Torch
            engine only.
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"``, a torch dtype (torch engine only),
            or ``None`` (bfloat16; float32 on a CPU without bfloat16 instructions).
        max_length: Most tokens per pair, template included; longer documents are truncated
            (``None``: 8192).
        instruction: Default instruction for calls that give none.
        llm: An existing ``vllm.LLM`` to score with (implies ``engine="vllm"``).
        **options: The engine's options (``max_batch_tokens``, ``max_memory``,
            ``kv_cache_memory_bytes``, ``revision``, ...; docs/engines.md lists them). An
            option the engine does not take raises ``ConfigurationError`` naming the engine.

    Example:
        >>> with Reranker("Qwen/Qwen3-Reranker-0.6B") as rr:  # doctest: +SKIP
        ...     rr.rerank("what is a panda?", ["The giant panda is a bear.", "Paris"], top_n=1)
        [RerankResult(index=0, score=0.99..., document='The giant panda is a bear.', ...)]
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        engine: str | Engine = "auto",
        device: Any = None,
        dtype: Any = None,
        max_length: int | None = None,
        instruction: str | None = None,
        llm: Any = None,
        **options: Any,
    ) -> None:
        self.instruction = _check_instruction(instruction, DEFAULT_INSTRUCTION)
        self.model: str | None = os.fspath(model) if model is not None else None
        """The model id or folder (the model name sent, for a remote engine), or ``None`` for
        an engine object passed in."""
        given = {"device": device, "dtype": dtype, "max_length": max_length, "llm": llm}
        options.update({name: value for name, value in given.items() if value is not None})
        if not isinstance(engine, str):
            if not isinstance(engine, Engine):
                raise ConfigurationError(
                    f"engine must be a name in {engines.names()} or an Engine object"
                )
            if model is not None or options:
                raise ConfigurationError(
                    "an engine object comes with its model and options; pass neither"
                )
            self.engine: Engine = engine
            return
        if self.model is not None and not self.model.strip():
            raise ConfigurationError("model must not be blank")
        if llm is not None and engine == "auto":
            engine = "vllm"
        if self.model is None and engines.resolve(engine) == "torch":
            raise ConfigurationError("a model (Hub id or local folder) is required")
        self.engine = engines.create(engine, self.model, **options)

    @classmethod
    def remote(
        cls,
        base_url: str,
        model: str | None = None,
        api: str = "vllm",
        *,
        instruction: str | None = None,
        **options: Any,
    ) -> Reranker:
        """A reranker that scores on a remote server (vLLM, Cohere, Jina, TEI, Infinity).

        The same as ``Reranker(model, engine="remote", base_url=base_url, api=api, ...)``.

        Args:
            base_url: The server, e.g. ``"http://gpu-box:8000"``.
            model: Model name to send (``None``: the server's default).
            api: ``"qwen3"`` (our server), ``"vllm"``, ``"vllm-score"``, ``"cohere"``, ``"jina"``,
                ``"tei"``, ``"infinity"``.
            instruction: Default instruction (needs a templating client or server).
            **options: ``api_key``, ``timeout``, ``max_retries``, ``max_concurrency``,
                ``max_documents_per_request``, ``apply_template``, ``transport``, ...
                (see :class:`~qwen3_rerank.engines.remote.RemoteOptions`).
        """
        return cls(
            model, engine="remote", instruction=instruction, base_url=base_url, api=api, **options
        )

    # -- scoring ---------------------------------------------------------------------------

    def score(
        self,
        query: str,
        documents: Sequence[str],
        instruction: str | None = None,
        *,
        progress: Progress | None = None,
    ) -> list[float]:
        """Relevance of each document to the query, in input order, each in [0, 1].

        Raises:
            InvalidInputError: Empty query, documents not a list of strings, bad instruction.
        """
        request = self._request(query, documents, instruction)
        if not request.documents:
            return []
        return self._score([request], progress)[0].scores

    async def ascore(
        self, query: str, documents: Sequence[str], instruction: str | None = None
    ) -> list[float]:
        """Async ``score``: the model runs off the event loop."""
        request = self._request(query, documents, instruction)
        if not request.documents:
            return []
        return (await self._ascore([request]))[0].scores

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        score_threshold: float | None = None,
        instruction: str | None = None,
        *,
        progress: Progress | None = None,
    ) -> list[RerankResult]:
        """Documents sorted by score (ties by input index), filtered, at most ``top_n``.

        Args:
            query: The search query.
            documents: The candidate texts.
            top_n: Keep at most this many results (``None``: all).
            score_threshold: Keep results with ``score >= score_threshold`` (in [0, 1]).
            instruction: Task instruction for this call (default: the reranker's).
            progress: Called with the number of pairs scored, as scoring goes on.
        """
        return self.rerank_batch(
            [query], [documents], top_n, score_threshold, instruction, progress=progress
        )[0]

    async def arerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        score_threshold: float | None = None,
        instruction: str | None = None,
    ) -> list[RerankResult]:
        """Async ``rerank``."""
        return (
            await self.arerank_batch([query], [documents], top_n, score_threshold, instruction)
        )[0]

    def rerank_batch(
        self,
        queries: Sequence[str],
        documents_lists: Sequence[Sequence[str]],
        top_n: int | None = None,
        score_threshold: float | None = None,
        instruction: str | None = None,
        *,
        progress: Progress | None = None,
    ) -> list[list[RerankResult]]:
        """``rerank`` for many queries at once, each with its own documents; batched together."""
        requests = self._requests(queries, documents_lists, instruction, top_n, score_threshold)
        scored = self._score([r for r in requests if r.documents], progress)
        return _rank_all(requests, scored, top_n, score_threshold)

    async def arerank_batch(
        self,
        queries: Sequence[str],
        documents_lists: Sequence[Sequence[str]],
        top_n: int | None = None,
        score_threshold: float | None = None,
        instruction: str | None = None,
    ) -> list[list[RerankResult]]:
        """Async ``rerank_batch``."""
        requests = self._requests(queries, documents_lists, instruction, top_n, score_threshold)
        scored = await self._ascore([r for r in requests if r.documents])
        return _rank_all(requests, scored, top_n, score_threshold)

    def validate(
        self, query: str, documents: Sequence[str], instruction: str | None = None
    ) -> ScoreRequest:
        """Checks one call's arguments as ``score`` does; returns the engine request.

        Raises:
            InvalidInputError: Empty query, documents not a list of strings, bad instruction.
        """
        return self._request(query, documents, instruction)

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Releases the engine (model memory, threads, connections)."""
        self.engine.close()

    async def aclose(self) -> None:
        """``close`` for async code: waits until the engine's connections are closed, without
        blocking the event loop (an engine's own ``aclose`` is used when it has one)."""
        aclose = getattr(self.engine, "aclose", None)
        if aclose is not None:
            await aclose()
        else:
            await asyncio.to_thread(self.engine.close)

    def __enter__(self) -> Reranker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Reranker:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(engine={type(self.engine).__name__})"

    # -- scoring through the engine, each distinct pair once --------------------------------

    def _score(
        self, requests: list[ScoreRequest], progress: Progress | None
    ) -> list[ScoredDocuments]:
        unique, expand, copies = unique_pairs(requests)
        scored = self.engine.score(unique, progress)
        if progress is not None and copies:
            progress(copies)  # the copies are scored too, by sharing
        return expand(scored)

    async def _ascore(self, requests: list[ScoreRequest]) -> list[ScoredDocuments]:
        unique, expand, _ = unique_pairs(requests)
        return expand(await self.engine.ascore(unique))

    # -- validation ------------------------------------------------------------------------

    def _request(
        self, query: str, documents: Sequence[str], instruction: str | None
    ) -> ScoreRequest:
        return ScoreRequest(
            _check_query(query),
            _check_documents(documents),
            _check_instruction(instruction, self.instruction),
        )

    def _requests(
        self,
        queries: Sequence[str],
        documents_lists: Sequence[Sequence[str]],
        instruction: str | None,
        top_n: int | None,
        score_threshold: float | None,
    ) -> list[ScoreRequest]:
        _check_top_n(top_n)
        _check_threshold(score_threshold)
        if not _is_list_like(queries):
            raise InvalidInputError(
                f"queries must be a list of strings, got {type(queries).__name__}"
            )
        if not _is_list_like(documents_lists):
            raise InvalidInputError(
                f"documents_lists must be a list of lists, got {type(documents_lists).__name__}"
            )
        if len(queries) != len(documents_lists):
            raise InvalidInputError(
                f"{len(queries)} queries but {len(documents_lists)} document lists"
            )
        return [
            self._request(q, d, instruction) for q, d in zip(queries, documents_lists, strict=True)
        ]


def _rank_all(
    requests: list[ScoreRequest],
    scored: list[ScoredDocuments],
    top_n: int | None,
    score_threshold: float | None,
) -> list[list[RerankResult]]:
    it = iter(scored)
    return [
        rank(r.documents, next(it), top_n, score_threshold) if r.documents else [] for r in requests
    ]


def rank(
    documents: Sequence[str],
    scored: ScoredDocuments,
    top_n: int | None,
    score_threshold: float | None,
) -> list[RerankResult]:
    """Results sorted by score, ties by input index; threshold, then ``top_n``, applied."""
    results = [
        RerankResult(i, s, d, t)
        for i, (d, s, t) in enumerate(zip(documents, scored.scores, scored.truncated, strict=True))
        if score_threshold is None or s >= score_threshold
    ]
    results.sort(key=lambda r: (-r.score, r.index))
    return results[:top_n] if top_n is not None else results


def _is_list_like(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray))


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a str, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{what} is not valid Unicode text (position {exc.start}: {exc.reason})"
        ) from exc
    return value


def _check_query(query: object) -> str:
    text = _check_text(query, "query")
    if not text.strip():
        raise InvalidInputError("query must not be empty or whitespace only")
    return text


def _check_documents(documents: object) -> list[str]:
    if not _is_list_like(documents):
        raise InvalidInputError(
            f"documents must be a list of strings, got {type(documents).__name__}"
        )
    assert isinstance(documents, Sequence)
    return [_check_text(d, f"documents[{i}]") for i, d in enumerate(documents)]


def _check_instruction(instruction: object, default: str) -> str:
    if instruction is None:
        return default
    text = _check_text(instruction, "instruction")
    if not text.strip():
        raise InvalidInputError("instruction must not be empty; pass None for the default")
    return text


def _check_top_n(top_n: object) -> None:
    if top_n is None:
        return
    if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
        raise InvalidInputError(f"top_n must be a positive integer or None, got {top_n!r}")


def _check_threshold(threshold: object) -> None:
    if threshold is None:
        return
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or math.isnan(threshold)
        or not 0.0 <= threshold <= 1.0
    ):
        raise InvalidInputError(f"score_threshold must be in [0, 1] or None, got {threshold!r}")
