"""MkDocs hook: the CLI reference generated from the real argparse parser."""

from __future__ import annotations

import argparse
from typing import Any

from mkdocs.structure.files import Files

from qwen3_rerank.cli import build_parser

CLI_MARKER = "<!-- cli-reference -->"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    if CLI_MARKER not in markdown:
        return markdown
    return markdown.replace(CLI_MARKER, cli_reference(build_parser()))


def cli_reference(parser: argparse.ArgumentParser) -> str:
    """One section per subcommand: its description, usage and every option with its help."""
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sections = []
    for name, sub in commands.choices.items():
        lines = [f"## `{parser.prog} {name}`", "", sub.description or "", ""]
        lines += ["```text", sub.format_usage().strip(), "```", ""]
        for group in sub._action_groups:
            rows = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]
            if not rows:
                continue
            lines += [f"**{group.title}**", "", "| option | meaning |", "|---|---|"]
            for action in rows:
                lines.append(f"| {option_cell(action)} | {help_cell(action)} |")
            lines.append("")
        sections.append("\n".join(lines))
    return "\n".join(sections)


def option_cell(action: argparse.Action) -> str:
    names = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.dest}`"
    if action.option_strings and action.nargs != 0:
        metavar = action.metavar or (
            "{" + ",".join(map(str, action.choices)) + "}"
            if action.choices
            else action.dest.upper()
        )
        names += f" `{metavar}`"
    return names


def help_cell(action: argparse.Action) -> str:
    text = (action.help or "").replace("|", "\\|")
    if action.required and action.option_strings:
        text += " (required)"
    default = action.default
    if default not in (None, False, argparse.SUPPRESS) and "default" not in text:
        text += f" (default: `{default}`)"
    return text
