"""The routes: thin handlers from protocol models to ``Service`` and back."""

from __future__ import annotations

import hmac
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .. import __version__
from .errors import ApiError
from .protocol import (
    BatchRerankRequest,
    BatchRerankResponse,
    Document,
    ErrorBody,
    Health,
    ModelCard,
    ModelList,
    RerankRequest,
    RerankResponse,
    RerankResult,
    ScoreData,
    ScoreRequest,
    ScoreResponse,
    TeiRank,
    Version,
)
from .service import Service, texts_of

__all__ = ["router"]

_bearer = HTTPBearer(auto_error=False, description="Needed when the server has an API key.")


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def require_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Checks ``Authorization: Bearer KEY`` (scheme in any case) when a key is set."""
    key: str | None = request.app.state.api_key
    if key is None:
        return
    given = credentials.credentials if credentials else ""
    if not hmac.compare_digest(given.encode(), key.encode()):
        raise ApiError(401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"})


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody} for code in codes}


_SCORING_ERRORS = _errors(400, 401, 404, 413, 415, 422, 500, 503)

router = APIRouter()
scoring = APIRouter(dependencies=[Depends(require_key)], responses=_SCORING_ERRORS)


def _ranked(
    scores: list[float], texts: list[str], top_n: int | None, with_documents: bool
) -> list[RerankResult]:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[: top_n or None]
    return [
        RerankResult(
            index=i,
            relevance_score=scores[i],
            document=Document(text=texts[i]) if with_documents else None,
        )
        for i in order
    ]


_RERANK_ANSWER = RerankResponse | list[TeiRank]


@scoring.post(
    "/v1/rerank",
    response_model=_RERANK_ANSWER,
    response_model_exclude_none=True,
    summary="Rerank documents against a query (vLLM, Cohere, Jina; TEI's shape too)",
)
@scoring.post(
    "/rerank",
    response_model=_RERANK_ANSWER,
    response_model_exclude_none=True,
    include_in_schema=False,
)
@scoring.post(
    "/v2/rerank",
    response_model=_RERANK_ANSWER,
    response_model_exclude_none=True,
    include_in_schema=False,
)
async def rerank(body: RerankRequest, request: Request) -> RerankResponse | list[TeiRank]:
    service = _service(request)
    texts = body.candidates
    scored = await service.score(
        request,
        [(body.query, texts)],
        **_options(body),
    )
    scores = scored.scores[0]
    if body.texts is not None:  # TEI's answer: a bare list, best first
        return [
            TeiRank(
                index=r.index,
                score=r.relevance_score,
                text=texts[r.index] if body.return_text else None,
            )
            for r in _ranked(scores, texts, None, False)
        ]
    return RerankResponse(
        id=f"rerank-{uuid.uuid4().hex}",
        model=service.model_name,
        usage=scored.usage,
        results=_ranked(scores, texts, body.top_n, body.return_documents),
    )


@scoring.post(
    "/v1/rerank/batch",
    response_model=BatchRerankResponse,
    response_model_exclude_none=True,
    summary="Rerank several queries, each with its own documents, in one request",
)
async def rerank_batch(body: BatchRerankRequest, request: Request) -> BatchRerankResponse:
    if len(body.queries) != len(body.documents_list):
        raise ApiError(
            422,
            f"{len(body.queries)} queries but {len(body.documents_list)} document lists",
            param="documents_list",
        )
    service = _service(request)
    lists = [texts_of(documents) for documents in body.documents_list]
    scored = await service.score(
        request, list(zip(body.queries, lists, strict=True)), **_options(body)
    )
    return BatchRerankResponse(
        id=f"rerank-{uuid.uuid4().hex}",
        model=service.model_name,
        usage=scored.usage,
        results=[
            _ranked(scores, texts, body.top_n, body.return_documents)
            for scores, texts in zip(scored.scores, lists, strict=True)
        ],
    )


@scoring.post(
    "/v1/score",
    response_model=ScoreResponse,
    summary="Score text_1 against each text_2 (vLLM's score API)",
)
@scoring.post("/score", response_model=ScoreResponse, include_in_schema=False)
async def score(body: ScoreRequest, request: Request) -> ScoreResponse:
    firsts = [body.text_1] if isinstance(body.text_1, str) else body.text_1
    seconds = [body.text_2] if isinstance(body.text_2, str) else body.text_2
    if len(firsts) == 1:
        queries = [(firsts[0], seconds)]
    elif len(firsts) == len(seconds):
        queries = [(q, [d]) for q, d in zip(firsts, seconds, strict=True)]
    else:
        raise ApiError(
            422,
            f"text_1 has {len(firsts)} items and text_2 {len(seconds)}: give one text_1, or "
            "as many as text_2",
            param="text_1",
        )
    service = _service(request)
    scored = await service.score(request, queries, **_options(body))
    flat = [s for scores in scored.scores for s in scores]
    return ScoreResponse(
        id=f"score-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=service.model_name,
        usage=scored.usage,
        data=[ScoreData(index=i, score=s) for i, s in enumerate(flat)],
    )


def _options(body: Any) -> dict[str, Any]:
    return {
        "model": body.model,
        "instruction": body.instruction,
        "max_tokens_per_doc": body.max_tokens_per_doc,
        "truncate_prompt_tokens": body.truncate_prompt_tokens,
        "use_activation": body.use_activation,
        "raw_scores": body.raw_scores,
    }


@router.get("/health", response_model=Health, summary="Liveness: 200 while the server runs")
async def health() -> Health:
    return Health()


@router.get(
    "/version",
    response_model=Version,
    dependencies=[Depends(require_key)],
    responses=_errors(401),
    summary="The server's qwen3-rerank version",
)
async def version() -> Version:
    return Version(version=__version__)


@router.get(
    "/v1/models",
    response_model=ModelList,
    dependencies=[Depends(require_key)],
    responses=_errors(401),
)
async def models(request: Request) -> ModelList:
    service = _service(request)
    return ModelList(
        data=[
            ModelCard(id=name, max_model_len=service.inputs.max_length)
            for name in service.model_names
        ]
    )


@router.get(
    "/metrics",
    dependencies=[Depends(require_key)],
    responses={200: {"content": {"text/plain": {}}}, **_errors(401)},
    response_class=Response,
)
async def metrics(request: Request) -> Response:
    return Response(
        _service(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )


router.include_router(scoring)
