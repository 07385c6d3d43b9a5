"""The wire protocol of ``qwen3-rerank serve``, defined once (pydantic only, no FastAPI).

The server validates requests and renders answers with these models, its OpenAPI schema is
generated from them, and the client's ``qwen3`` dialect builds its requests with them, so the
two cannot drift. The shapes follow vLLM's pooling protocol (``/v1/rerank``, ``/score``), which
Cohere, Jina and Infinity clients also read; TEI's ``{"query", "texts"}`` is accepted too.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    model_validator,
)

__all__ = [
    "BatchRerankRequest",
    "BatchRerankResponse",
    "Document",
    "ErrorBody",
    "ErrorInfo",
    "Health",
    "ModelCard",
    "ModelList",
    "RerankRequest",
    "RerankResponse",
    "RerankResult",
    "ScoreData",
    "ScoreRequest",
    "ScoreResponse",
    "TeiRank",
    "Usage",
    "Version",
]


class Document(BaseModel):
    """A document as an object (Cohere's and Jina's form)."""

    text: str


class _Scoring(BaseModel):
    """Options every scoring request shares."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    model: str | None = Field(default=None, description="One of the served model names.")
    instruction: str | None = Field(
        default=None,
        validation_alias=AliasChoices("instruction", "custom_instruction"),
        description="Task instruction of the Qwen3 template (alias: custom_instruction).",
    )
    max_tokens_per_doc: PositiveInt | None = Field(
        default=None, description="Cut each document to this many tokens (Cohere)."
    )
    truncate_prompt_tokens: PositiveInt | None = Field(
        default=None,
        description="Cut each document so that its whole prompt, template included, has at "
        "most this many tokens (vLLM).",
    )
    use_activation: bool | None = Field(
        default=None, description="Only true (or absent): scores are probabilities."
    )
    raw_scores: bool | None = Field(
        default=None, description="Only false (or absent): scores are probabilities."
    )
    priority: int | None = Field(default=None, description="Accepted; all requests are equal.")


class RerankRequest(_Scoring):
    """``POST /v1/rerank``: one query and its documents (vLLM, Cohere, Jina; TEI on /rerank)."""

    query: str
    documents: list[str | Document] | None = Field(
        default=None, description="The candidates, as strings or {'text': ...} objects."
    )
    texts: list[str] | None = Field(
        default=None, description="TEI's name for documents; the answer is then TEI's list."
    )
    top_n: NonNegativeInt | None = Field(default=None, description="0 or absent: all.")
    return_documents: bool = True
    return_text: bool = Field(default=False, description="TEI: echo the text in each result.")

    @model_validator(mode="after")
    def _one_list(self) -> RerankRequest:
        if (self.documents is None) == (self.texts is None):
            raise ValueError("give exactly one of documents and texts (TEI)")
        return self

    @property
    def candidates(self) -> list[str]:
        """The documents' texts, whichever field carried them."""
        if self.texts is not None:
            return list(self.texts)
        return [d if isinstance(d, str) else d.text for d in self.documents or []]


class BatchRerankRequest(_Scoring):
    """``POST /v1/rerank/batch``: several queries, each with its own documents."""

    queries: list[str]
    documents_list: list[list[str | Document]]
    top_n: NonNegativeInt | None = None
    return_documents: bool = True


class ScoreRequest(_Scoring):
    """``POST /v1/score`` (vLLM): ``text_1`` is one query (or one per ``text_2`` item)."""

    text_1: str | list[str]
    text_2: str | list[str]


class Usage(BaseModel):
    """Tokens of every scored prompt, Qwen3 template included, and documents scored."""

    prompt_tokens: int
    total_tokens: int
    total_documents: int


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: Document | None = None


class RerankResponse(BaseModel):
    id: str
    object: Literal["rerank"] = "rerank"
    model: str
    usage: Usage
    results: list[RerankResult]


class BatchRerankResponse(BaseModel):
    id: str
    object: Literal["rerank.batch"] = "rerank.batch"
    model: str
    usage: Usage
    results: list[list[RerankResult]]


class TeiRank(BaseModel):
    """One item of TEI's answer, a bare list sorted best first."""

    index: int
    score: float
    text: str | None = None


class ScoreData(BaseModel):
    index: int
    object: Literal["score"] = "score"
    score: float


class ScoreResponse(BaseModel):
    id: str
    object: Literal["list"] = "list"
    created: int
    model: str
    usage: Usage
    data: list[ScoreData]


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: int


class ErrorBody(BaseModel):
    """Every error: vLLM's ``error`` object, plus ``detail`` (Jina, FastAPI clients) and
    ``message`` (Cohere clients) at the top level."""

    error: ErrorInfo
    detail: str
    message: str


class Health(BaseModel):
    status: Literal["OK"] = "OK"


class Version(BaseModel):
    """The package's version, in vLLM's ``/version`` shape."""

    version: str


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    owned_by: str = "qwen3-rerank"
    max_model_len: int | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
