"""Render the measured tables of docs/performance.md from bench/results/*.json.

The page is written by hand; each generated table sits between `<!-- name:begin -->` and
`<!-- name:end -->` markers and is replaced by `python -m bench.report`."""

from __future__ import annotations

import json
import re
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
PAGE = Path(__file__).parents[1] / "docs" / "performance.md"
TIMES = "\u00d7"


def _row(name: str, stats: dict, floor: dict | None) -> str:
    ratio = f"{stats['p95'] / floor['p95']:.2f}\u00d7" if floor else "floor"
    return f"| {name} | {stats['p50']:.2f} | {stats['p95']:.2f} | {stats['p99']:.2f} | {ratio} |"


def search_table() -> str:
    lines = []
    for path in sorted(RESULTS.glob("search-*.json")):
        report = json.loads(path.read_text())
        latency = report["latency_ms"]
        lines += [
            f"**{report['database']}, {report['resources']:,} resources** "
            f"({report['cores']} cores, {report['requests']} queries of each, "
            f"{report['example_worklist']['matches']} tasks and "
            f"{report['example_worklist']['included']} patients in a typical worklist):",
            "",
            "| query | p50 ms | p95 ms | p99 ms | p95 / SQL floor |",
            "|---|---|---|---|---|",
        ]
        for query, label in (("worklist", "IDEL worklist"), ("ins", "INS lookup")):
            floor = latency[f"{query}_sql_floor"]
            lines += [
                _row(f"{label}: hand-written SQL (floor)", floor, None),
                _row(
                    f"{label}: engine (parse, SQL, Bundle JSON)", latency[f"{query}_engine"], floor
                ),
                _row(f"{label}: HTTP end to end", latency[f"{query}_http"], floor),
            ]
        lines.append("")
    return "\n".join(lines).rstrip()


def plans() -> str:
    lines = []
    for path in sorted(RESULTS.glob("search-*.json")):
        report = json.loads(path.read_text())
        for key, title in (
            ("worklist_server_plan", "IDEL worklist, server's SQL"),
            ("worklist_floor_plan", "IDEL worklist, hand-written SQL"),
            ("ins_server_plan", "INS lookup, server's SQL"),
        ):
            lines += [
                f"{title} ({report['database']}, {report['resources']:,} resources):",
                "",
                "```",
                *report["plans"][key],
                "```",
                "",
            ]
    return "\n".join(lines).rstrip()


def validation_table() -> str:
    path = RESULTS / "validation.json"
    if not path.exists():
        return (
            "(not measured yet: `python -m bench.validation --json bench/results/validation.json`)"
        )
    report = json.loads(path.read_text())
    lines = [
        f"{report['iterations']} iterations, Python {report['python']}:",
        "",
        "| resource, profile | parse mean µs (p95) | validate mean µs (p95) | validate / parse |",
        "|---|---|---|---|",
    ]
    for name in ("Patient", "Task"):
        row = report[name]
        profile = row["profile"].rsplit("/", 1)[1]
        lines.append(
            f"| {name}, {profile} | {row['parse']['mean_us']:.0f} ({row['parse']['p95_us']:.0f})"
            f" | {row['validate']['mean_us']:.0f} ({row['validate']['p95_us']:.0f}) | "
            f"{row['ratio_mean']:.2f} |"
        )
    return "\n".join(lines)


def crud_table(folder: Path = RESULTS) -> str:
    lines = []
    for path in sorted(folder.glob("crud-*.json")):
        report = json.loads(path.read_text())
        lines += [
            f"**{report['database']}, {report['scale']}** ({report['cores']} cores, "
            f"{report['concurrency']} requests in flight, peak memory of the server worker "
            f"{report['server_peak_memory_mb']} MB):",
            "",
            "| scenario | floor req/s | server req/s | server / floor | goal | "
            "server p50 / p95 / p99 ms | floor p95 ms |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, row in report["scenarios"].items():
            server, floor = row["server"], row["floor"]
            goal = report["goals"].get(name)
            verdict = (
                f"≥ {goal['goal']} {'reached' if goal['reached'] else 'not reached'}"
                if goal
                else ""
            )
            latency = server["latency_ms"]
            lines.append(
                f"| {name} | {floor['throughput_per_s']:,.0f} | {server['throughput_per_s']:,.0f}"
                f" | {row['ratio']['throughput']:.2f} | {verdict} | {latency['p50']:.1f} / "
                f"{latency['p95']:.1f} / {latency['p99']:.1f} | "
                f"{floor['latency_ms']['p95']:.1f} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip() or "(not measured yet: `python -m bench.run`)"


def scenarios_table(folder: Path = RESULTS) -> str:
    """$apply, HL7 v2 ingest and the deadline sweep, one row per database and scale."""
    lines = [
        "| scenario | database, scale | figure | floor | ratio to floor | goal |",
        "|---|---|---|---|---|---|",
    ]
    for path in sorted(folder.glob("pathway-apply-*-*.json")):
        r = json.loads(path.read_text())
        apply, floor = r["latency_ms"]["apply"], r["latency_ms"]["transaction_floor"]
        lines.append(
            f"| `$apply` heart failure ({r['resources_per_call']} resources) | {_where(path)} | "
            f"p50 {apply['p50']:.1f} / p95 {apply['p95']:.1f} ms | transaction of the same "
            f"resources: p95 {floor['p95']:.1f} ms | {r['p95_ratio']:.2f}{TIMES} (p95) | |"
        )
    for path in sorted(folder.glob("hl7v2-ingest-*-*.json")):
        r = json.loads(path.read_text())
        ratio = r["ratio"]
        lines.append(
            f"| HL7 v2 ingest, {r['connections']} MLLP connections | {_where(path)} | "
            f"{r['ingest_mllp']['throughput_per_s']:.1f} msg/s, "
            f"{ratio['door_ms_per_message']:.1f} ms/message | hl7apy parse "
            f"{ratio['parse_ms_per_message']:.1f} ms/message | "
            f"{ratio['door_over_parse']:.2f}{TIMES} | "
            f"≤ {ratio['goal']}{TIMES} {'reached' if ratio['reached'] else 'not reached'} |"
        )
    for path in sorted(folder.glob("deadline-sweep-*-*.json")):
        r = json.loads(path.read_text())
        sweep = r["sweep"]
        lines.append(
            f"| deadline sweep, {r['open_tasks']:,} open tasks, {sweep['counts']['late']:,} late"
            f" | {_where(path)} | {sweep['seconds']:.1f} s ({sweep['late_per_second']:.0f} late "
            f"tasks/s); idle sweep {r['idle_sweep']['seconds']:.2f} s | SQL select + plain "
            f"writes {r['floor']['total_s']:.1f} s | {r['ratio_sweep_vs_floor']:.2f}{TIMES} | |"
        )
    return "\n".join(lines)


def security_table(folder: Path = RESULTS) -> str:
    """Security on against security off, the same calls on the same database; the servers'
    CPU per request, and what indexing the secured server's audit trail cost afterwards."""
    lines = [
        "| call | database, scale | off: req/s, p50, p95 ms | on: req/s, p50, p95 ms "
        "| on/off throughput | on/off p95 | goal | server CPU ms/request, off / on "
        "| audit indexed later, CPU ms/event |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(folder.glob("security-overhead-*.json")):
        report = json.loads(path.read_text())
        for call, label in (("worklist", "IDEL worklist"), ("create", "create Observation")):
            r = report["scenarios"][call]
            off, on, cpu = r["off"], r["on"], r["server_cpu_ms"]
            lines.append(
                f"| {label} | {_where(path)} ({report['cores']} cores) | "
                f"{off['throughput_per_s']:.0f}, {off['latency_ms']['p50']:.1f}, "
                f"{off['latency_ms']['p95']:.1f} | {on['throughput_per_s']:.0f}, "
                f"{on['latency_ms']['p50']:.1f}, {on['latency_ms']['p95']:.1f} | "
                f"{r['throughput_ratio']:.2f}{TIMES} | {r['p95_ratio']:.2f}{TIMES} | "
                f"\u2264 {r['goal']}{TIMES} | {cpu['off']:.2f} / {cpu['on']:.2f} | "
                f"{report['backlog']['cpu_ms_per_event']:.2f} |"
            )
    return "\n".join(lines)


def _where(path: Path) -> str:
    """`sqlite, 100k` from `name-sqlite-100k.json`."""
    database, scale = path.stem.rsplit("-", 2)[1:]
    return f"{database}, {scale}"


SECTIONS = {
    "crud": crud_table,
    "scenarios": scenarios_table,
    "search": search_table,
    "plans": plans,
    "validation": validation_table,
    "security": security_table,
}


def render(page: str) -> str:
    for name, make in SECTIONS.items():
        pattern = re.compile(rf"(<!-- {name}:begin -->\n)(?:.*?\n)?(<!-- {name}:end -->)", re.S)
        page = pattern.sub(lambda m, make=make: m.group(1) + make() + "\n" + m.group(2), page)
    return page


if __name__ == "__main__":
    PAGE.write_text(render(PAGE.read_text()))
    print(f"updated {PAGE}")
