"""What several subcommands share: how bad input is reported (``CliParser``, ``UsageError``),
the argument types, the engine and remote-server options, how those options become a
:class:`Reranker`, and keeping transformers' notices off stderr."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from ..reranker import Reranker


class UsageError(Exception):
    """Bad command-line input found before any model is loaded."""


class CliParser(argparse.ArgumentParser):
    """Reports a usage error as one line on stderr (exit 2), not the whole usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def unit_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


# engine options with flags of their own; ``--option`` gives the others
FLAGGED_OPTIONS = frozenset(
    ["engine", "device", "dtype", "max_length", "max_batch_tokens", "max_memory", "quantization"]
)


def engine_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``--option``: ``true``/``false``/``none`` and numbers as such, other
    values as text (the engine checks each option's type and says what it takes)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    words = {"true": True, "false": False, "none": None}
    if value.lower() in words:
        return key, words[value.lower()]
    for number in (int, float):
        try:
            return key, number(value)
        except ValueError:
            pass
    return key, value


def add_remote_arguments(parser: argparse.ArgumentParser, url_help: str) -> None:
    group = parser.add_argument_group("remote server")
    group.add_argument("--url", help=url_help)
    group.add_argument("--api", default="qwen3", help="API dialect (default qwen3)")
    group.add_argument(
        "--api-key",
        help="sent as 'Authorization: Bearer KEY' (default: the API's environment variable, "
        "e.g. QWEN3_RERANK_API_KEY for --api qwen3)",
    )
    group.add_argument("--max-documents", type=positive_int, help="documents per request at most")


def add_engine_arguments(parser: argparse.ArgumentParser, model_required: bool = True) -> None:
    group = parser.add_argument_group("engine")
    group.add_argument("--model", "-m", required=model_required, help="Hub id or local folder")
    group.add_argument("--engine", default="auto", help="auto (torch) | torch | vllm")
    group.add_argument("--device", help="cpu | cuda | cuda:N (default: CUDA if available)")
    group.add_argument(
        "--dtype",
        help="float32 | bfloat16 | float16 (default: bfloat16; float32 on a CPU without bf16 "
        "instructions)",
    )
    group.add_argument("--max-length", type=positive_int, default=8192, help="tokens per pair")
    group.add_argument("--max-batch-tokens", type=positive_int, help="tokens per forward pass")
    group.add_argument("--max-memory", help="torch engine: device memory cap, e.g. 1.5GiB")
    group.add_argument(
        "--quantization",
        choices=("fp8",),
        help="fp8: FP8 projections, bfloat16 only (CUDA GPUs with FP8 units)",
    )
    group.add_argument(
        "--option",
        type=engine_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other engine option, e.g. --option fused_mlp=false (repeatable; "
        "the torch engine's are TorchOptions' fields)",
    )


def build_reranker(args: argparse.Namespace) -> Reranker:
    """A remote reranker with ``--url`` (``--model``, if given, names the server's model),
    else a local engine from the engine options."""
    from ..reranker import Reranker

    refuse_options_with_url(args)
    if args.url:
        return Reranker.remote(
            args.url,
            args.model,
            api=args.api,
            api_key=args.api_key,
            max_documents_per_request=args.max_documents,
        )
    if args.model is None:
        raise UsageError("give --model (a local engine) or --url (a rerank server)")
    return Reranker(args.model, **engine_options(args))


def refuse_options_with_url(args: argparse.Namespace) -> None:
    """``--option`` with ``--url`` would be dropped unseen: a usage error instead."""
    if args.url and args.option:
        raise UsageError("--option sets a local engine's options; drop it with --url")


def engine_options(args: argparse.Namespace) -> dict[str, Any]:
    if args.quantization == "fp8":
        _check_fp8(args.device, args.dtype)
    options: dict[str, Any] = {
        "engine": args.engine,
        "device": args.device,
        "dtype": args.dtype,
        "max_length": args.max_length,
    }
    if args.max_batch_tokens is not None:
        options["max_batch_tokens"] = args.max_batch_tokens
    if args.max_memory is not None:
        options["max_memory"] = args.max_memory
    if args.quantization is not None:
        options["quantization"] = args.quantization
    given: dict[str, Any] = {}
    for key, value in args.option:
        if key in FLAGGED_OPTIONS:
            raise UsageError(f"--option {key}=...: use --{key.replace('_', '-')}")
        if key in given:
            raise UsageError(f"--option {key}= given twice")
        given[key] = value
    return options | given


def _check_fp8(device: str | None, dtype: str | None) -> None:
    """The engine's own errors name Python arguments; these name the flags."""
    if dtype not in (None, "bfloat16"):
        raise UsageError(f"--quantization fp8 needs --dtype bfloat16 (got --dtype {dtype})")
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not device.startswith("cuda"):
        raise UsageError(
            f"--quantization fp8 needs a CUDA GPU with FP8 units; this run is on {device} "
            "(drop --quantization)"
        )


def quiet_transformers() -> None:
    """Keep transformers' load-time bars and notices off a non-interactive stderr."""
    try:
        from transformers.utils import logging
    except ImportError:
        return
    logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    logging.set_verbosity_error()  # type: ignore[no-untyped-call]
