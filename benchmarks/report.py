"""Turns benchmarks/bench.py's JSON into markdown tables; every number comes from the JSON.

    python benchmarks/report.py benchmarks/results/gpu.json [PART.json ...]  # results, summary.md
    python benchmarks/report.py benchmarks/results/cpu.json                  # cpu.md
    python benchmarks/report.py RUN.json --readme README.md   # also README's short table

Several JSON files of one device (a run split into parts) are merged row by row. Ratios are
ours against the best peer of each workload, named: the fastest row that is not ours and whose
scores are within the run's tolerance of the fp32 reference. No ratio is given against a weaker
configuration of a peer alone.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OURS = "ours"
SERVER = "ours_serve"  # our server over HTTP, compared with the other servers
NOT_PEERS = {"reference_fp32"}


def repo_path(path: Path) -> str:
    """``path`` from the repository's root where it is inside it (the tables are also included
    in the docs site, where a link relative to the JSON's folder would not resolve)."""
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return path.name


def merge(runs: list[dict[str, Any]], files: list[str]) -> dict[str, Any]:
    """The first run, with the model sizes and rows of the others added. Each row keeps the file
    it came from (``run``), and ``parts`` lists the files: a run split into parts is measured on
    several machines of one kind, at the commits each part names. A row measured again in a
    later part keeps its name for the earlier figures and is added as ``row (part)``: the
    ratios compare rows of one part wherever a part measured both (:func:`against_best_peer`)."""
    merged = json.loads(json.dumps(runs[0]))
    merged["models"] = {}
    merged["parts"] = []
    for run, source in zip(runs, files, strict=True):
        for size, entry in run["models"].items():
            mine = merged["models"].setdefault(size, {**entry, "rows": {}})["rows"]
            for name, row in entry["rows"].items():
                again = name in mine and name not in NOT_PEERS
                mine[f"{name} ({Path(source).stem})" if again else name] = {**row, "run": source}
        merged["workloads"] += [w for w in run["workloads"] if w not in merged["workloads"]]
        names = dict.fromkeys(name for entry in run["models"].values() for name in entry["rows"])
        merged["parts"].append(
            {
                "source": source,
                "rows": [name for name in names if name not in NOT_PEERS],
                "commit": run["commit"],
                "tflops": run["matmul_tflops"],
                "passes": run.get("passes") or 1,
                "latency_queries": run.get("latency_queries") or 0,
            }
        )
    return merged


def measured_as(row: str) -> str:
    """The bench row a merged row is: its name without the part :func:`merge` may add."""
    return row.split(" (")[0]


def sources(run: dict[str, Any]) -> list[str]:
    """The JSON files the run was merged from."""
    return [part["source"] for part in run["parts"]]


def figures(entry: dict[str, Any], row: str, workload: str) -> dict[str, Any]:
    return entry["rows"].get(row, {}).get("workloads", {}).get(workload) or {}


def measured(run: dict[str, Any], entry: dict[str, Any]) -> list[str]:
    """The run's workloads that some row of this model size has figures for."""
    return [w for w in run["workloads"] if any(figures(entry, row, w) for row in entry["rows"])]


def is_peer(row: str) -> bool:
    return not row.startswith(OURS) and row not in NOT_PEERS


def best_peer(
    entry: dict[str, Any],
    workload: str,
    key: str = "pairs_per_s",
    among: Iterable[str] | None = None,
) -> str | None:
    """The peer with the highest ``key`` (lowest for latency) among correct rows (of ``among``
    where given)."""
    lower = key == "p50_ms"
    found = [
        (f[key], row)
        for row in (entry["rows"] if among is None else among)
        if is_peer(row)
        for f in [figures(entry, row, workload)]
        if f.get(key) and f.get("scores_ok", True)
    ]
    if not found:
        return None
    return (min(found) if lower else max(found))[1]


def fmt(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def speed_key(run: dict[str, Any]) -> str:
    """What ranks rows: pairs/s on a GPU; on a CPU, whose workloads are one query each, the
    time of that query (p50 ms), which the JSON keeps to the hundredth of a millisecond."""
    return "p50_ms" if run["device_kind"] == "cpu" else "pairs_per_s"


def speed_ratio(run: dict[str, Any], mine: dict[str, Any], theirs: dict[str, Any]) -> float:
    """How many times faster ``mine`` is than ``theirs`` (above 1: faster)."""
    if speed_key(run) == "p50_ms":
        return float(theirs["p50_ms"]) / float(mine["p50_ms"])
    return float(mine["pairs_per_s"]) / float(theirs["pairs_per_s"])


def both(key: str, spec: str, ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    """``ours / theirs`` of one figure."""
    return f"{fmt(ours.get(key), spec)} / {fmt(theirs.get(key), spec)}"


def fmt_rate(value: float | None) -> str:
    """pairs/s: one decimal from 100 up, three significant digits below (a CPU's 0.05)."""
    return fmt(value, ".1f" if value is not None and value >= 100 else ".3g")


def parts_differ(run: dict[str, Any], count: str) -> bool:
    """Whether the runs merged into ``run`` timed different numbers of ``count``: ``passes``
    (calls a workload) or ``latency_queries`` (queries alone)."""
    return len({part[count] for part in run["parts"]}) > 1


def timing(run: dict[str, Any]) -> str:
    """How the run timed its rows, in words."""
    calls = (
        "its run's timed calls" if parts_differ(run, "passes") else f"{run['passes']} timed call(s)"
    )
    if run["device_kind"] == "cpu":
        return (
            f"Each workload is one query; p50 ms: the median of {calls} on fresh inputs after "
            "a warm-up call, pairs/s: its documents over the fastest of them; rows are ranked "
            "by p50. Where several runs timed ours on a workload, the one with the most timed "
            "calls is compared. Peak RSS: the row's process and those it starts (vLLM's "
            "engine), model included."
        )
    queries = (
        "its run's fresh queries timed alone (a run that timed none: its timed calls, where "
        "the workload is one query)"
        if parts_differ(run, "latency_queries")
        else f"{run['latency_queries']} fresh queries"
    )
    return (
        f"pairs/s: the best of {run['passes']} calls on fresh inputs after a warm-up, the "
        "better of one call per query and one call for the workload (mode); repeated input: "
        "the warm-up's inputs again (a prefix cache skips part of them); p50/max: one query of "
        f"the workload, {queries}."
    )


def header(run: dict[str, Any]) -> list[str]:
    def calls(part: dict[str, Any]) -> str:  # named where the runs timed different counts
        said = f", {part['passes']} timed call(s)" if parts_differ(run, "passes") else ""
        if parts_differ(run, "latency_queries"):
            said += f", {part['latency_queries']} queries timed alone"
        return said

    versions = ", ".join(f"{k} {v}" for k, v in run["versions"].items() if v)
    parts = run["parts"]
    if len(parts) == 1:
        where = (
            f"qwen3-rerank at {run['commit']}. Dense {run['matmul_dtype']} matmul measured at "
            f"{run['matmul_tflops']} TFLOP/s in the same run."
        )
    else:
        where = (
            f"measured in {len(parts)} runs, each on a machine of this kind with its own fp32 "
            "reference and matmul rate (the FLOP-limit fractions use it): "
            + "; ".join(
                f"`{p['source']}`: {', '.join(p['rows'])} (qwen3-rerank at {p['commit']}, "
                f"{run['matmul_dtype']} matmul {p['tflops']} TFLOP/s{calls(p)})"
                for p in parts
            )
            + ". Where several runs measured ours and the best peer side by side, the ratios "
            "are the least favourable of them."
        )
    return [
        f"Device: **{run['device']}**; host CPU {run['cpu']}, {run['cpu_cores']} cores, "
        f"{run['ram_gib']} GiB RAM. {versions}; {where}",
        "",
        f"Each number comes from {', '.join(f'`{s}`' for s in sources(run))} "
        "(benchmarks/bench.py; tables by benchmarks/report.py). Random weights with the real "
        f"configs and tokenizer. {timing(run)} "
        "Accuracy: max |score - fp32 reference| over the warm-up's pairs and the lowest "
        f"per-query Spearman; a row off by more than {run['score_tolerance']} is marked WRONG "
        "and is never the best peer.",
        "",
    ]


def full_tables(run: dict[str, Any]) -> list[str]:
    cpu = run["device_kind"] == "cpu"
    memory = "peak RSS GiB" if cpu else "torch peak GiB | GPU peak GiB"
    lines: list[str] = []
    for size, entry in run["models"].items():
        for w in measured(run, entry):
            peer = best_peer(entry, w, speed_key(run))
            peer_f = figures(entry, peer, w) if peer else {}
            lines += [
                f"### {size}, {w}" + (f" (best peer: {peer})" if peer else ""),
                "",
                "| row | pairs/s | x best peer | mode | repeated input | tokens/s | FLOP-limit "
                f"fraction | p50 ms | max ms | {memory} | load s | max diff vs fp32 | Spearman |",
                "|---|" + "---|" * (13 if not cpu else 12),
            ]
            for row, got in entry["rows"].items():
                f = figures(entry, row, w)
                if row in NOT_PEERS and "error" not in got:
                    continue  # the yardstick: scores only, its diffs are in the other rows
                if not f or "pairs_per_s" not in f:
                    why = f.get("error") or got.get("error") or "not run"
                    why = why[:120].replace("|", "/").replace("`", "'")  # a log line, as code
                    lines.append(f"| {row} | `{why}` |" + " |" * (12 if not cpu else 11))
                    continue
                pps = f["pairs_per_s"]
                ratio = speed_ratio(run, f, peer_f) if peer_f and row != peer else None
                mem = (
                    fmt(got.get("peak_rss_gib"), ".2f")
                    if cpu
                    else (
                        f"{fmt(f.get('torch_peak_gib'), '.2f')} "
                        f"| {fmt(f.get('gpu_peak_gib'), '.2f')}"
                    )
                )
                wrong = "" if f.get("scores_ok", True) else " WRONG"
                lines.append(
                    f"| {row} | {fmt_rate(pps)} | {fmt(ratio, '.2f')} | {f['mode']} "
                    f"| {fmt_rate(f.get('repeat_pairs_per_s'))} "
                    f"| {fmt(f.get('tokens_per_s'), '.0f')} "
                    f"| {fmt(f.get('flop_fraction'), '.3f')} | {fmt(f.get('p50_ms'))} "
                    f"| {fmt(f.get('max_ms'))} | {mem} | {fmt(got.get('load_s'))} "
                    f"| {fmt(f.get('max_abs_diff_vs_fp32'), '.4f')}{wrong} "
                    f"| {fmt(f.get('spearman_min'), '.4f')} |"
                )
            lines.append("")
    return lines


def ours_rows(run: dict[str, Any], entry: dict[str, Any], workload: str) -> list[str]:
    """Which of ours' rows may speak for a workload: of the parts that ran ours on it, those with
    the most timed passes, so that a careful repeat replaces a quick run."""
    passes = {part["source"]: part["passes"] for part in run["parts"]}
    mine = [
        row
        for row in entry["rows"]
        if measured_as(row) == OURS and figures(entry, row, workload).get("pairs_per_s")
    ]
    most = max((passes[entry["rows"][row]["run"]] for row in mine), default=0)
    return [row for row in mine if passes[entry["rows"][row]["run"]] == most]


def best_peer_of_run(entry: dict[str, Any], workload: str, key: str, mine: str) -> str | None:
    """The best peer of all runs, as measured in the run of our row ``mine`` where that run
    measured it too."""
    best = best_peer(entry, workload, key)
    if best is None:
        return None
    run = entry["rows"][mine]["run"]
    again = [
        row
        for row in entry["rows"]
        if measured_as(row) == measured_as(best) and entry["rows"][row]["run"] == run
    ]
    return best_peer(entry, workload, key, among=again) or best


def against_best_peer(
    run: dict[str, Any],
) -> Iterator[tuple[str, dict[str, Any], str, str, dict[str, Any], str, dict[str, Any]]]:
    """(size, its entry, workload, ours' row, its figures, best peer, its figures) wherever ours
    ran and a peer with right scores did too (:func:`best_peer_of_run`). Where several parts
    measured ours and that peer side by side, the least favourable of them speaks (the peer's
    own figures move from machine to machine); a peer from another part only where no part
    measured both, against the first of ours."""
    key = speed_key(run)
    for size, entry in run["models"].items():
        for w in measured(run, entry):
            pairs = [
                (mine, peer)
                for mine in ours_rows(run, entry, w)
                for peer in [best_peer_of_run(entry, w, key, mine)]
                if peer is not None
            ]
            if not pairs:
                continue
            side_by_side = [
                (mine, peer)
                for mine, peer in pairs
                if entry["rows"][mine]["run"] == entry["rows"][peer]["run"]
            ]
            mine, peer = min(
                side_by_side or pairs[:1],
                key=lambda pair: speed_ratio(
                    run, figures(entry, pair[0], w), figures(entry, pair[1], w)
                ),
            )
            yield size, entry, w, mine, figures(entry, mine, w), peer, figures(entry, peer, w)


def named(entry: dict[str, Any], peer: str, mine: str) -> str:
    """The peer's row name, marked where it was measured in another run than ours."""
    rows = entry["rows"]
    return peer if rows[peer]["run"] == rows[mine]["run"] else f"{peer} (another run)"


def summary_table(run: dict[str, Any]) -> list[str]:
    """Ours against the best peer of each workload: throughput, one-query latency, memory."""
    cpu = run["device_kind"] == "cpu"
    memory = "peak RSS GiB" if cpu else "whole-GPU GiB"
    lines = [
        f"| model | workload | ours pairs/s | best peer | its pairs/s | ours / best | ours p50 ms "
        f"| fastest peer p50 ms | ours {memory} | that peer's {memory} |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size, entry, w, mine, ours, peer, theirs in against_best_peer(run):
        quick = best_peer_of_run(entry, w, "p50_ms", mine)
        quick_f = figures(entry, quick, w) if quick else {}

        def mem(row: str, f: dict[str, Any], rows: dict[str, Any] = entry["rows"]) -> str:
            if cpu:
                return fmt(rows[row].get("peak_rss_gib"), ".2f")
            return fmt(f.get("gpu_peak_gib"), ".2f")

        lines.append(
            f"| {size} | {w} | {fmt_rate(ours['pairs_per_s'])}{mine[len(OURS) :]} "
            f"| {named(entry, peer, mine)} | "
            f"{fmt_rate(theirs['pairs_per_s'])} | **{speed_ratio(run, ours, theirs):.2f}x** "
            f"| {fmt(ours.get('p50_ms'))} | {fmt(quick_f.get('p50_ms'))} ({quick}) "
            f"| {mem(mine, ours)} | {mem(peer, theirs)} |"
        )
    return lines


def server_table(run: dict[str, Any]) -> list[str]:
    """Our server against the fastest other server measured in the same part as it (both over
    HTTP with the same client); empty where ``ours_serve`` did not run."""
    lines = []
    for size, entry in run["models"].items():
        rows = entry["rows"]
        if SERVER not in rows:
            continue
        part = rows[SERVER]["run"]
        servers = [r for r in rows if measured_as(r).endswith("_serve") and rows[r]["run"] == part]
        for w in measured(run, entry):
            ours, peer = figures(entry, SERVER, w), best_peer(entry, w, among=servers)
            if not ours.get("pairs_per_s") or peer is None:
                continue
            theirs = figures(entry, peer, w)
            lines.append(
                f"| {size} | {w} | `{part}` | {fmt_rate(ours['pairs_per_s'])} "
                f"| {measured_as(peer)} | {fmt_rate(theirs['pairs_per_s'])} "
                f"| **{speed_ratio(run, ours, theirs):.2f}x** "
                f"| {both('p50_ms', '.1f', ours, theirs)} "
                f"| {both('gpu_peak_gib', '.2f', ours, theirs)} |"
            )
    if not lines:
        return []
    return [
        "| model | workload | run | ours_serve pairs/s | fastest other server | its pairs/s "
        "| ours / it | one query p50 ms, ours / it | whole-GPU GiB, ours / it |",
        "|---|---|---|---|---|---|---|---|---|",
        *lines,
    ]


# README's words for each workload (core/qwen3_rerank/workloads.py makes them)
WORKLOAD_WORDS = {
    "rag100x256": "100 documents of 256 tokens a query",
    "mixed16x100": "100 documents of 32-1024 tokens a query",
    "long16x4000": "16 documents of 4000 tokens",
    "query20x256": "one query, 20 documents of 256 tokens",
    "query50x256": "one query, 50 documents of 256 tokens",
    "long4x2000": "one query, 4 documents of 2000 tokens",
}


def readme_table(run: dict[str, Any]) -> list[str]:
    """README's short table: ours against the best peer of each workload; on a GPU also one
    query's p50 and the whole-GPU memory of both."""
    cpu = run["device_kind"] == "cpu"

    def speed(f: dict[str, Any]) -> str:
        if cpu:
            return f"{f['p50_ms'] / 1000:.1f} s"
        return f"{fmt_rate(f['pairs_per_s'])} pairs/s"

    head = f"| {run['device']} | ours | fastest peer with right scores | ours / it |"
    rule = "|---|---|---|---|"
    if not cpu:
        head += " one query p50 ms, ours / it | whole-GPU GiB, ours / it |"
        rule += "---|---|"
    lines = [head, rule]
    for size, entry, w, mine, ours, peer, theirs in against_best_peer(run):
        line = (
            f"| {size}, {WORKLOAD_WORDS.get(w, w)} | {speed(ours)}{mine[len(OURS) :]} "
            f"| {named(entry, peer, mine)}: "
            f"{speed(theirs)} | **{speed_ratio(run, ours, theirs):.2f}x** |"
        )
        if not cpu:
            line += f" {both('p50_ms', '.1f', ours, theirs)} |"
            line += f" {both('gpu_peak_gib', '.2f', ours, theirs)} |"
        lines.append(line)
    return [*lines, "", f"Made by benchmarks/report.py from `{'`, `'.join(sources(run))}`."]


def splice(text: str, key: str, lines: list[str]) -> str:
    """``text`` with what stands between ``<!-- report.py KEY -->`` and
    ``<!-- /report.py KEY -->`` replaced by ``lines``."""
    start, end = f"<!-- report.py {key} -->", f"<!-- /report.py {key} -->"
    if start not in text or end not in text:
        raise SystemExit(f"no {start} ... {end} block to fill")
    head, rest = text.split(start, 1)
    return "\n".join([head + start, *lines, end + rest.split(end, 1)[1]])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("json", nargs="+", type=Path)
    parser.add_argument(
        "--out", type=Path, help="folder of the markdown (default: the first JSON's)"
    )
    parser.add_argument(
        "--readme",
        type=Path,
        help="also fill this file's <!-- report.py cpu|cuda --> block with the short table",
    )
    args = parser.parse_args()
    run = merge([json.loads(p.read_text()) for p in args.json], [repo_path(p) for p in args.json])
    out = args.out or args.json[0].parent
    out.mkdir(parents=True, exist_ok=True)
    title = f"# Benchmark on {run['device']}"
    if args.readme:
        filled = splice(args.readme.read_text(), run["device_kind"], readme_table(run))
        args.readme.write_text(filled)
    if run["device_kind"] == "cpu":
        text = [
            title,
            "",
            *header(run),
            "### Ours against the best peer",
            "",
            *summary_table(run),
            "",
            "### All rows",
            "",
            *full_tables(run),
        ]
        (out / "cpu.md").write_text("\n".join(text))
        print(out / "cpu.md")
        return 0
    (out / "results.md").write_text("\n".join([title, "", *header(run), *full_tables(run)]))
    summary = [
        f"qwen3-rerank against the best peer of each workload on {run['device']} "
        f"({'same run' if len(run['parts']) == 1 else 'a peer from another run is marked'}; "
        f"source: {', '.join(sources(run))}; all rows: results.md).",
        "",
        *summary_table(run),
        "",
    ]
    (out / "summary.md").write_text("\n".join(summary))
    print(out / "results.md", out / "summary.md")
    servers = server_table(run)
    if servers:
        title = f"Our server against the others over HTTP on {run['device']}, each row one run."
        (out / "servers.md").write_text("\n".join([title, "", *servers, ""]))
        print(out / "servers.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
