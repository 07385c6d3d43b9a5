"""Batch scoring on Ray Data: one ``Reranker`` per actor, rows scored in place.

A row is ``{query, document[, instruction]}`` (one score, a float) or ``{query, documents:
list[str][, instruction]}`` (a list of scores in the documents' order). Every other column
passes through untouched, so ids stay with their rows.

Batches: Ray Data hands each actor ``batch_size`` rows (its unit of work and of retry). Inside
a batch the rows are grouped by (query, instruction) and given to the engine in one call, so
the engine computes a query's shared prefix once for all its documents and cuts its forward
passes by tokens (``max_batch_tokens``), not rows: long and short documents cost what they
weigh.

Bad rows (an empty query, a document that is not a string) get ``NaN`` / ``None`` in the score
column and the reason in the error column; the rest of the batch is scored. With
``strict=True`` the first bad row fails the job with an ``InvalidInputError`` naming it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, InvalidInputError
from ..reranker import Reranker

if TYPE_CHECKING:
    import numpy as np
    from ray.data import Dataset

__all__ = ["RerankBatches", "rerank_dataset"]


class RerankBatches:
    """A callable class for ``Dataset.map_batches(..., batch_format="numpy")``.

    Ray builds one per actor, so the model loads once per GPU (or CPU slot) and serves every
    batch that actor receives.

    Args:
        model: Hub id or local folder for a local engine (torch or vLLM); ``None`` with ``url``.
        url: A rerank server to score on instead (``Reranker.remote``); ``model`` then names
            the server's model.
        api: The server's API dialect with ``url`` (default ``"qwen3"``: ``qwen3-rerank serve``).
        strict: Raise on the first bad row instead of reporting it in the error column.
        query_column, document_column, documents_column, instruction_column: Input columns.
            A batch has ``document_column`` (one document per row) or ``documents_column`` (a
            list per row); ``instruction_column`` is optional (missing or null: the default).
        score_column, error_column: Output columns.
        **reranker_options: Passed to ``Reranker`` (``engine``, ``device``, ``dtype``,
            ``max_length``, ``max_batch_tokens``, ``instruction``, ...) or, with ``url``, to
            ``Reranker.remote`` (``api_key``, ``timeout``, ``max_concurrency``, ...).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        url: str | None = None,
        api: str = "qwen3",
        strict: bool = False,
        query_column: str = "query",
        document_column: str = "document",
        documents_column: str = "documents",
        instruction_column: str = "instruction",
        score_column: str = "score",
        error_column: str = "error",
        **reranker_options: Any,
    ) -> None:
        if url is not None:
            name = os.fspath(model) if model is not None else None
            self.reranker = Reranker.remote(url, name, api=api, **reranker_options)
        else:
            self.reranker = Reranker(model, **reranker_options)
        self.strict = strict
        self.query_column, self.instruction_column = query_column, instruction_column
        self.document_column, self.documents_column = document_column, documents_column
        self.score_column, self.error_column = score_column, error_column

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The batch's columns plus the score and error columns, rows in input order."""
        import numpy as np

        listed = self._documents_layout(batch)
        queries = batch[self.query_column]
        documents = batch[self.documents_column if listed else self.document_column]
        instructions = batch.get(self.instruction_column)
        rows = len(queries)

        errors: list[str | None] = [None] * rows
        groups: dict[tuple[str, str], list[tuple[int, list[str]]]] = {}
        for i in range(rows):
            instruction = None if instructions is None else instructions[i]
            try:
                docs = _documents_of(documents[i], listed)
                request = self.reranker.validate(queries[i], docs, instruction)
            except InvalidInputError as exc:
                if self.strict:
                    raise InvalidInputError(
                        f"bad row (query={_short(queries[i])}): {exc}; pass strict=False to "
                        f"report bad rows in the {self.error_column!r} column instead"
                    ) from None
                errors[i] = str(exc)
                continue
            key = (request.query, request.instruction)
            groups.setdefault(key, []).append((i, list(request.documents)))

        scores_of = self._score(groups)
        out = dict(batch)
        if listed:
            column = np.empty(rows, dtype=object)
            for i in range(rows):
                column[i] = scores_of.get(i)
            out[self.score_column] = column
        else:
            out[self.score_column] = np.array(
                [scores_of[i][0] if i in scores_of else math.nan for i in range(rows)],
                dtype=np.float64,
            )
        out[self.error_column] = np.array(errors, dtype=object)
        return out

    def _score(self, groups: dict[tuple[str, str], list[tuple[int, list[str]]]]) -> dict[int, Any]:
        """Scores per row index: one engine call for the whole batch, one request per query."""
        from ..engines.base import ScoreRequest

        requests = [
            ScoreRequest(query, [d for _, docs in rows for d in docs], instruction)
            for (query, instruction), rows in groups.items()
        ]
        requests_with_documents = [r for r in requests if r.documents]
        scored = iter(self.reranker.engine.score(requests_with_documents))
        scores_of: dict[int, list[float]] = {}
        for request, rows in zip(requests, groups.values(), strict=True):
            flat = next(scored).scores if request.documents else []
            start = 0
            for i, docs in rows:
                scores_of[i] = flat[start : start + len(docs)]
                start += len(docs)
        return scores_of

    def _documents_layout(self, batch: Mapping[str, Any]) -> bool:
        """True for one list of documents per row, False for one document per row."""
        has_one, has_list = self.document_column in batch, self.documents_column in batch
        if self.query_column not in batch or has_one == has_list:
            raise ConfigurationError(
                f"rows need a {self.query_column!r} column and exactly one of "
                f"{self.document_column!r} or {self.documents_column!r}; got {sorted(batch)}"
            )
        return has_list

    def __del__(self) -> None:
        reranker = getattr(self, "reranker", None)
        if reranker is not None:
            reranker.close()


def rerank_dataset(
    ds: Dataset,
    model: str | os.PathLike[str] | None = None,
    *,
    concurrency: int | tuple[int, int] = 1,
    num_gpus: float = 0,
    num_cpus: float | None = None,
    batch_size: int = 1024,
    batches: type[RerankBatches] | None = None,
    **options: Any,
) -> Dataset:
    """``ds`` with a score column (and an error column), one ``Reranker`` per actor.

    Lazy like every Ray Data transform: nothing runs until the result is consumed
    (``write_parquet``, ``take_all``, ``iter_batches``, ...). Output rows keep the input order.

    Faults: Ray Data restarts an actor that dies and sends the batch it held again, without
    limit (its actor pools' defaults, ``max_restarts=-1`` and ``max_task_retries=-1``); a
    batch's rows are emitted once, when it completes, so every row is scored exactly once. A
    bad row with ``strict=True`` fails the job with an ``InvalidInputError`` naming the row
    (Ray's ``RayTaskError`` made an instance of it; ``.cause`` is the original).

    Args:
        ds: Rows of ``{query, document}`` or ``{query, documents}`` (see :class:`RerankBatches`).
        model: Hub id or local folder (or the server's model name with ``url=``).
        concurrency: Actors (an int), or ``(min, max)`` for an autoscaling pool.
        num_gpus: GPUs per actor (1: one model per GPU).
        num_cpus: CPUs per actor (default: 1 without GPUs, Ray's default with them).
        batch_size: Rows per batch handed to an actor (its unit of work and of retry).
        batches: A :class:`RerankBatches` subclass to run instead (to log, filter or enrich
            rows around the scoring); ``options`` go to its constructor.
        **options: :class:`RerankBatches` options (``url``, ``strict``, column names) and
            ``Reranker`` options (``engine``, ``device``, ``dtype``, ``max_batch_tokens``, ...).
    """
    if batch_size < 1:
        raise ConfigurationError(f"batch_size must be >= 1, got {batch_size}")
    if num_cpus is None and not num_gpus:
        num_cpus = 1
    from ray.data import ActorPoolStrategy

    if isinstance(concurrency, int):
        pool = ActorPoolStrategy(size=concurrency)
    else:
        pool = ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    out = ds.map_batches(
        batches or RerankBatches,
        fn_constructor_args=(model,),
        fn_constructor_kwargs=options,
        batch_size=batch_size,
        batch_format="numpy",
        compute=pool,  # Ray 2.51 deprecates concurrency= for this
        num_gpus=num_gpus,
        num_cpus=num_cpus,
        udf_modifying_row_count=False,
    )
    # Ray Data may emit batches as they finish; scores must line up with the rows read in.
    out.context.execution_options.preserve_order = True
    # Raised as Ray's error that is also the package's (InvalidInputError, EngineError, ...),
    # not a generic UserCodeException, so callers can catch what they know.
    out.context.raise_original_map_exception = True
    return out


def _documents_of(value: object, listed: bool) -> list[Any]:
    """The row's documents as a list (Ray hands list cells over as numpy arrays)."""
    if not listed:
        if not isinstance(value, str):
            raise InvalidInputError(f"document must be a str, got {type(value).__name__}")
        return [value]
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list):
        raise InvalidInputError(f"documents must be a list of strings, got {type(value).__name__}")
    return value


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
