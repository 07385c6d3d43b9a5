"""benchmarks/report.py: the ratio in every table is against the fastest peer whose scores are
right, named, on the numbers of the JSON (run as a user runs it: the script on a file)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPORT = Path(__file__).resolve().parents[2] / "benchmarks" / "report.py"


def run_json(kind: str, rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "device": "a test device",
        "device_kind": kind,
        "cpu": "a CPU",
        "cpu_cores": 2,
        "ram_gib": 8,
        "versions": {"torch": "2"},
        "commit": "abc1234",
        "matmul_tflops": 1.0,
        "matmul_dtype": "float32",
        "passes": 1,
        "latency_queries": 0,
        "score_tolerance": 0.1,
        "workloads": ["w"],
        "models": {"0.6b": {"rows": {k: {"workloads": {"w": v}} for k, v in rows.items()}}},
    }


def figures(pairs_per_s: float, p50_ms: float, diff: float = 0.001) -> dict[str, Any]:
    return {
        "pairs_per_s": pairs_per_s,
        "p50_ms": p50_ms,
        "mode": "per_query",
        "max_abs_diff_vs_fp32": diff,
        "scores_ok": diff <= 0.1,
    }


def run_report(*args: Path | str) -> None:
    subprocess.run([sys.executable, str(REPORT), *map(str, args)], check=True, capture_output=True)


def report_parts(tmp_path: Path, *parts: dict[str, Any]) -> None:
    """report.py over the parts of one run, written as part1.json, part2.json, ..."""
    paths = [tmp_path / f"part{i}.json" for i in range(1, len(parts) + 1)]
    for path, data in zip(paths, parts, strict=True):
        path.write_text(json.dumps(data))
    run_report(*paths)


def report(tmp_path: Path, data: dict[str, Any], name: str) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    run_report(path)
    out = "cpu.md" if data["device_kind"] == "cpu" else "summary.md"
    return (tmp_path / out).read_text()


def test_the_ratio_is_against_the_fastest_peer_with_right_scores(tmp_path: Path) -> None:
    data = run_json(
        "cuda",
        {
            "ours": figures(1000.0, 60.0),
            "fast_but_wrong": figures(5000.0, 10.0, diff=0.4),
            "vllm_best": figures(500.0, 100.0),
            "vllm_score": figures(250.0, 200.0),
        },
    )
    summary = report(tmp_path, data, "gpu.json")
    line = next(x for x in summary.splitlines() if x.startswith("| 0.6b | w |"))
    assert "| vllm_best | 500.0 | **2.00x** |" in line
    results = (tmp_path / "results.md").read_text()
    assert "0.4000 WRONG" in results


def test_cpu_tables_rank_by_the_time_of_the_query_and_keep_small_rates(tmp_path: Path) -> None:
    # one query of 4 documents: 0.0646 pairs/s in 61.9 s, against 0.0577 in 69.3 s
    data = run_json(
        "cpu",
        {"ours": figures(0.06464, 61_900.0), "transformers": figures(0.05772, 69_300.0)},
    )
    table = report(tmp_path, data, "cpu.json")
    line = next(x for x in table.splitlines() if x.startswith("| 0.6b | w |"))
    assert "| 0.0646 | transformers | 0.0577 | **1.12x** |" in line


def test_readme_block_is_filled_from_the_json_and_nothing_else_moves(tmp_path: Path) -> None:
    data = run_json(
        "cpu",
        {"ours": figures(0.06464, 61_900.0), "transformers": figures(0.05772, 69_300.0)},
    )
    path = tmp_path / "cpu.json"
    path.write_text(json.dumps(data))
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- report.py cpu -->\nold table\n<!-- /report.py cpu -->\nrest\n")
    run_report(path, "--readme", readme)
    text = readme.read_text()
    assert text.startswith("intro\n<!-- report.py cpu -->\n| a test device | ours |")
    assert "| 0.6b, w | 61.9 s | transformers: 69.3 s | **1.12x** |" in text
    assert "old table" not in text
    assert text.endswith("<!-- /report.py cpu -->\nrest\n")


def test_gpu_readme_block_gives_speed_latency_and_memory_of_both(tmp_path: Path) -> None:
    ours, peer = figures(1000.0, 60.0), figures(500.0, 120.0)
    ours["gpu_peak_gib"], peer["gpu_peak_gib"] = 2.2, 74.0
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(run_json("cuda", {"ours": ours, "vllm_best": peer})))
    readme = tmp_path / "README.md"
    readme.write_text("<!-- report.py cuda -->\n<!-- /report.py cuda -->\n")
    run_report(path, "--readme", readme)
    line = "| 0.6b, w | 1000.0 pairs/s | vllm_best: 500.0 pairs/s | **2.00x** | 60.0 / 120.0 |"
    assert line + " 2.20 / 74.00 |" in readme.read_text()


def test_parts_of_a_run_are_named_and_the_ratio_compares_rows_of_one_part(tmp_path: Path) -> None:
    """A run split into parts (one device call each): the results name every part's rows,
    commit and matmul rate. Ours measured again in a later part is listed as that part's, and
    the ratio compares ours with the best peer as the same part measured them."""
    first = run_json("cuda", {"ours": figures(1000.0, 60.0), "vllm_best": figures(500.0, 100.0)})
    second = run_json("cuda", {"ours": figures(900.0, 70.0), "vllm_serve": figures(800.0, 90.0)})
    second["commit"], second["matmul_tflops"] = "def5678", 2.0
    report_parts(tmp_path, first, second)
    results = (tmp_path / "results.md").read_text()
    assert "measured in 2 runs" in results
    assert "`part1.json`: ours, vllm_best (qwen3-rerank at abc1234" in results
    assert (
        "`part2.json`: ours, vllm_serve (qwen3-rerank at def5678, float32 matmul 2.0 TFLOP/s)"
        in results
    )
    assert "| ours | 1000.0 |" in results
    assert "| ours (part2) | 900.0 |" in results
    assert "in the same run" not in results
    summary = (tmp_path / "summary.md").read_text()
    assert "| 900.0 (part2) | vllm_serve | 800.0 | **1.12x** |" in summary


def test_a_peer_only_another_part_measured_is_marked(tmp_path: Path) -> None:
    """Where no part measured ours and the best peer side by side, the peer's part is named."""
    first = run_json("cuda", {"ours": figures(1000.0, 60.0), "vllm_best": figures(500.0, 100.0)})
    second = run_json("cuda", {"vllm_serve": figures(800.0, 90.0)})
    report_parts(tmp_path, first, second)
    summary = (tmp_path / "summary.md").read_text()
    assert "| 1000.0 | vllm_serve (another run) | 800.0 | **1.25x** |" in summary


def test_the_least_favourable_of_several_side_by_side_runs_is_given(tmp_path: Path) -> None:
    """Ours and the best peer measured side by side in three parts (the peer's figure moves
    from machine to machine): the ratio is the lowest of the three, with that part's figures."""
    parts = [
        run_json("cuda", {"ours": figures(ours, 60.0), "vllm_best": figures(peer, 100.0)})
        for ours, peer in [(1000.0, 500.0), (1100.0, 600.0), (1200.0, 550.0)]
    ]
    report_parts(tmp_path, *parts)
    summary = (tmp_path / "summary.md").read_text()
    assert "| 1100.0 (part2) | vllm_best (part2) | 600.0 | **1.83x** |" in summary
    assert "**2.00x**" not in summary
    assert "**2.18x**" not in summary
    assert "the ratios are the least favourable of them" in (tmp_path / "results.md").read_text()


def test_a_repeat_with_more_timed_calls_speaks_for_its_workload(tmp_path: Path) -> None:
    """A workload timed again with more calls (one call each had left ours and a peer within
    the machine's spread): its ours is compared, against the same peer as that repeat measured
    it, and the parts' call counts are named."""
    first = run_json(
        "cpu",
        {"ours": figures(0.0906, 44_169.0), "st_bf16": figures(0.0888, 45_032.0)},
    )
    second = run_json(
        "cpu",
        {"ours": figures(0.1078, 37_945.0), "st_bf16": figures(0.0885, 45_471.0)},
    )
    second["passes"] = 3
    report_parts(tmp_path, first, second)
    table = (tmp_path / "cpu.md").read_text()
    assert "TFLOP/s, 1 timed call(s))" in table
    assert "TFLOP/s, 3 timed call(s))" in table
    line = next(x for x in table.splitlines() if x.startswith("| 0.6b | w |"))
    assert "| 0.108 (part2) | st_bf16 (part2) | 0.0885 | **1.20x** | 37945.0 |" in line


def test_our_server_is_compared_with_servers_of_its_own_run(tmp_path: Path) -> None:
    """servers.md: ours_serve against the fastest other server measured in the same part, never
    one from another part (a faster host there would make the ratio meaningless)."""
    first = run_json("cuda", {"ours": figures(1000.0, 60.0), "vllm_serve": figures(900.0, 90.0)})
    second = run_json(
        "cuda", {"ours_serve": figures(800.0, 70.0), "vllm_serve": figures(400.0, 140.0)}
    )
    report_parts(tmp_path, first, second)
    servers = (tmp_path / "servers.md").read_text()
    assert "| 800.0 | vllm_serve | 400.0 | **2.00x** | 70.0 / 140.0 |" in servers
    assert "900.0" not in servers


def test_parts_that_timed_different_numbers_of_lone_queries_say_so(tmp_path: Path) -> None:
    """A part that timed no query alone (its p50 is the median of its timed calls) is named as
    such, rather than every part being said to have timed the first part's count."""
    first = run_json("cuda", {"ours": figures(1000.0, 60.0), "vllm_best": figures(500.0, 100.0)})
    second = run_json("cuda", {"ours": figures(900.0, 70.0), "vllm_best": figures(600.0, 90.0)})
    first["latency_queries"] = 8
    report_parts(tmp_path, first, second)
    results = (tmp_path / "results.md").read_text()
    assert "float32 matmul 1.0 TFLOP/s, 8 queries timed alone)" in results
    assert "float32 matmul 1.0 TFLOP/s, 0 queries timed alone)" in results
    assert "8 fresh queries" not in results
    assert "its run's fresh queries timed alone" in results
