"""The remote engine's options: where the server is, which API it speaks, how to talk to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import ConfigurationError
from ..dialects import DIALECTS
from ..options import check_choice, check_int, check_number

__all__ = ["RemoteOptions"]


@dataclass(frozen=True)
class RemoteOptions:
    """Options of the remote engine (``Reranker.remote(base_url, model, api, **options)``).

    Args:
        base_url: The server, e.g. ``"http://gpu-box:8000"``.
        api: ``"qwen3"`` (``qwen3-rerank serve``), ``"vllm"`` (``/v1/rerank``),
            ``"vllm-score"`` (``/score``), ``"cohere"`` (``/v2/rerank``), ``"jina"``, ``"tei"``
            or ``"infinity"``.
        api_key: Sent as ``Authorization: Bearer <api_key>``. ``None``: the API's usual
            environment variable, if set: ``QWEN3_RERANK_API_KEY`` (``"qwen3"``, the one
            ``qwen3-rerank serve`` reads), ``VLLM_API_KEY`` (the vLLM dialects),
            ``CO_API_KEY`` (``"cohere"``), ``JINA_API_KEY`` (``"jina"``).
        timeout: Seconds per HTTP request.
        max_retries: Retries after the first try, for connection errors, timeouts, 429, 5xx.
        max_concurrency: Requests in flight at once, over all calls on this engine (sync
            calls and each event loop's async calls count separately).
        max_documents_per_request: Split longer lists (``None``: the API's own limit if any).
        apply_template: Wrap query and documents in the Qwen3 template client-side; ``None``
            picks it for the vLLM dialects, whose servers score the strings they get.
        transport: An ``httpx`` async transport for every request, sync calls' too (e.g.
            ``httpx.MockTransport`` in your tests).
    """

    base_url: str
    api: str = "vllm"
    api_key: str | None = None
    timeout: float = 30.0
    max_retries: int = 3
    max_concurrency: int = 8
    max_documents_per_request: int | None = None
    apply_template: bool | None = None
    transport: Any = None

    def __post_init__(self) -> None:
        check_choice("api", self.api, tuple(sorted(DIALECTS)))
        if not isinstance(self.base_url, str) or not self.base_url.startswith(
            ("http://", "https://")
        ):
            raise ConfigurationError(
                f"base_url must start with http:// or https://: {self.base_url!r}"
            )
        check_int("max_retries", self.max_retries, 0)
        check_int("max_concurrency", self.max_concurrency, 1)
        check_int("max_documents_per_request", self.max_documents_per_request, 1, optional=True)
        check_number("timeout", self.timeout)
        if self.apply_template not in (None, True, False):
            raise ConfigurationError("apply_template must be True, False or None")
