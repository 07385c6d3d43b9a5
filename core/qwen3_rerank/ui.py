"""A web page to try the reranker: ``qwen3-rerank ui --model M`` or ``--url URL`` (extra ``[ui]``).

Query, documents (one per line, or an uploaded .txt / .jsonl file), instruction, top-n and
threshold in; a ranked table with a score bar per row out. Errors are shown in the page as one
line, never as a stack trace.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

from .documents import read_documents
from .errors import MissingDependencyError, Qwen3RerankError
from .reranker import Reranker
from .results import RerankResult

__all__ = ["build_ui", "run_rerank"]

_STYLE = """
<style>
#ranking {border-collapse: collapse; width: 100%; font-size: 14px}
#ranking th, #ranking td {border-bottom: 1px solid #ddd; padding: 4px 6px; text-align: left}
#ranking .bar {background: #4c78a8; height: 12px; border-radius: 2px}
.qr-error {color: #b00020; font-weight: 600; padding: 8px}
</style>
"""


def run_rerank(
    reranker: Reranker,
    query: str,
    documents_text: str,
    upload: str | None,
    instruction: str,
    top_n: float | None,
    threshold: float | None,
) -> str:
    """The page's action: ranked results as an HTML table, or an error message."""
    try:
        documents = [line for line in (documents_text or "").splitlines() if line.strip()]
        if upload:
            path = Path(upload)
            documents += [t for t, _ in read_documents(path, path.suffix == ".jsonl")]
        results = reranker.rerank(
            query or "",
            documents,
            top_n=int(top_n) if top_n else None,
            score_threshold=float(threshold) if threshold else None,
            instruction=instruction.strip() or None if instruction else None,
        )
    except (Qwen3RerankError, ValueError) as exc:
        return f'{_STYLE}<div class="qr-error" id="error">Error: {html.escape(str(exc))}</div>'
    return _STYLE + _table(results, len(documents))


def _table(results: list[RerankResult], total: int) -> str:
    rows = "".join(
        f"<tr><td>{rank}</td><td>{r.index}</td><td>{r.score:.4f}</td>"
        f'<td style="width:30%"><div class="bar" style="width:{r.score * 100:.1f}%"></div></td>'
        f"<td>{html.escape(r.document)}{' <i>(truncated)</i>' if r.truncated else ''}</td></tr>"
        for rank, r in enumerate(results, 1)
    )
    return (
        f"<p>{len(results)} of {total} documents</p>"
        '<table id="ranking"><thead><tr><th>rank</th><th>index</th><th>score</th><th></th>'
        f"<th>document</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def build_ui(reranker: Reranker, title: str = "qwen3-rerank") -> Any:
    """The Gradio app around a reranker the caller owns."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio as gr
    except ImportError as exc:
        raise MissingDependencyError("gradio", "ui") from exc

    with gr.Blocks(title=title) as demo:
        gr.Markdown(f"# {html.escape(title)}")
        with gr.Row():
            with gr.Column():
                query = gr.Textbox(label="Query", elem_id="query")
                documents = gr.Textbox(
                    label="Documents, one per line", lines=10, elem_id="documents"
                )
                upload = gr.File(
                    label="...or a file (.txt: one per line; .jsonl: a 'text' field)",
                    file_types=[".txt", ".jsonl"],
                    type="filepath",
                    elem_id="upload",
                )
                instruction = gr.Textbox(label="Instruction (optional)", elem_id="instruction")
                with gr.Row():
                    top_n = gr.Number(label="Top n (0: all)", value=0, precision=0, elem_id="top_n")
                    threshold = gr.Slider(
                        0, 1, value=0, step=0.01, label="Score threshold", elem_id="threshold"
                    )
                submit = gr.Button("Rerank", variant="primary", elem_id="submit")
            with gr.Column():
                output = gr.HTML(elem_id="results")
        submit.click(
            lambda *args: run_rerank(reranker, *args),
            [query, documents, upload, instruction, top_n, threshold],
            output,
        )
    return demo
