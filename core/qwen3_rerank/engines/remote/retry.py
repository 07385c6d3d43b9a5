"""The remote engine's retry policy, on tenacity: which failures are tried again, and when.

Connection errors, timeouts, 429 and 5xx are retried (``RemoteError.retryable``); other 4xx and
answers that cannot be trusted are not. Before the next try the engine waits what the server
asked for in ``Retry-After`` (seconds or an HTTP date, at most :data:`RETRY_AFTER_CAP_S`), else
exponential backoff with full jitter. A 413 is not retried here: the engine sends the refused
request again in halves (``engine.py``), the one policy of its own.
"""

from __future__ import annotations

import email.utils
import logging
import time

import tenacity

from ...errors import RemoteError, RemoteStatusError

__all__ = ["BACKOFF_CAP_S", "RETRY_AFTER_CAP_S", "retry_after_seconds", "retrying"]

_log = logging.getLogger(__name__)

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0
RETRY_AFTER_CAP_S = 60.0
"""The longest ``Retry-After`` waited out; a server asking for more is waited on this long."""


def retrying(max_retries: int) -> tenacity.AsyncRetrying:
    """The policy for one request: ``max_retries`` retries after the first try; the last
    error is raised as it is."""
    return tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(max_retries + 1),
        retry=tenacity.retry_if_exception(lambda e: isinstance(e, RemoteError) and e.retryable),
        wait=_wait_retry_after_or_backoff,
        before_sleep=_log_retry,
        reraise=True,
    )


_backoff = tenacity.wait_random_exponential(multiplier=BACKOFF_BASE_S, max=BACKOFF_CAP_S)


def _wait_retry_after_or_backoff(state: tenacity.RetryCallState) -> float:
    error = state.outcome.exception() if state.outcome is not None else None
    if isinstance(error, RemoteStatusError) and error.retry_after is not None:
        return min(error.retry_after, RETRY_AFTER_CAP_S)
    return float(_backoff(state))


def _log_retry(state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    _log.info("try %d failed (%s); trying again in %.2f s", state.attempt_number, error, wait)


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header as seconds to wait: a number, or an HTTP date from now;
    ``None`` when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
