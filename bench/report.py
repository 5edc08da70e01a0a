"""Summaries, budget verdicts and the printed / markdown tables of `make bench`.

Every figure quoted is a median over rounds. A ratio "×A" or "×W" is computed within
each round (front X and front A/W of the same round, started one after the other)
and the median of those per-round ratios is quoted, so slow drift of the machine
cancels out instead of landing on whichever front ran last.
"""

from __future__ import annotations

import statistics
from typing import Any

from load import CELLS


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def paired(runs: dict[str, list[dict | None]], front: str, base: str, metric: str, op: str = "ratio") -> float | None:
    """Median over rounds of X/base (or X-base) for `metric`, pairing runs of the same round."""
    return median(paired_values(runs, front, base, metric, op))


def paired_values(runs: dict[str, list[dict | None]], front: str, base: str, metric: str, op: str = "ratio") -> list[float]:
    """X/base (or X-base) for `metric`, one value per round."""
    values = []
    for x, b in zip(runs.get(front, []), runs.get(base, [])):
        if x is None or b is None or x.get(metric) is None or b.get(metric) is None:
            continue
        if op == "ratio":
            if b[metric]:
                values.append(x[metric] / b[metric])
        else:
            values.append(x[metric] - b[metric])
    return values


def summarize_cells(raw_cells: dict[str, dict[str, list[dict | None]]]) -> dict[str, dict[str, dict[str, Any]]]:
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for cell_key, runs in raw_cells.items():
        summary[cell_key] = {}
        for front, rounds in runs.items():
            done = [r for r in rounds if r is not None]
            if not done:
                continue
            s: dict[str, Any] = {
                "rounds": len(done),
                "rps": median([r["rps"] for r in done]),
                "rps_all": [round(r["rps"], 1) for r in done],
                "p50_ms": median([r["p50_us"] / 1000 for r in done if r["p50_us"] is not None]),
                "p99_ms": median([r["p99_us"] / 1000 for r in done if r["p99_us"] is not None]),
                "cpu_per_10k_s": median([r["cpu_per_10k_s"] for r in done]),
                "front_util": median([r["front_util"] for r in done]),
                "foreign_util": median([r["foreign_util"] for r in done]),
                "errors": sum(r["error_count"] for r in done),
            }
            for base in ("A", "W"):
                if base in runs and front != base:
                    s[f"rps_x{base}"] = paired(runs, front, base, "rps")
                    s[f"rps_x{base}_rounds"] = [round(v, 3) for v in paired_values(runs, front, base, "rps")]
                    s[f"cpu_x{base}"] = paired(runs, front, base, "cpu_per_10k_s")
                    if done[0]["p99_us"] is not None:
                        s[f"p99_added_vs_{base}_ms"] = _ms(paired(runs, front, base, "p99_us", "diff"))
                        s[f"p50_added_vs_{base}_ms"] = _ms(paired(runs, front, base, "p50_us", "diff"))
                    s[f"cpu_added_vs_{base}_us"] = _us_per_req(paired(runs, front, base, "cpu_per_10k_s", "diff"))
            if "N" in runs and front not in ("N", "A"):
                s["rps_xN"] = paired(runs, front, "N", "rps")
                s["rps_xN_rounds"] = [round(v, 3) for v in paired_values(runs, front, "N", "rps")]
                s["cpu_xN"] = paired(runs, front, "N", "cpu_per_10k_s")
            if "M" in runs and front not in ("M", "A", "W", "N"):
                s["rps_xM"] = paired(runs, front, "M", "rps")
                s["rps_xM_rounds"] = [round(v, 3) for v in paired_values(runs, front, "M", "rps")]
                s["cpu_xM"] = paired(runs, front, "M", "cpu_per_10k_s")
                # What mcp-trace's own code and extra host calls cost over the job's floor.
                s["cpu_added_vs_M_us"] = _us_per_req(paired(runs, front, "M", "cpu_per_10k_s", "diff"))
            summary[cell_key][front] = s
    return summary


def _ms(us: float | None) -> float | None:
    return None if us is None else us / 1000


def _us_per_req(seconds_per_10k: float | None) -> float | None:
    return None if seconds_per_10k is None else seconds_per_10k / 10_000 * 1e6


def summarize_ttfe(raw_ttfe: dict[str, list[dict]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for front, rounds in raw_ttfe.items():
        medians = [median(r["ttfe_us"]) for r in rounds]
        p99s = [percentile(r["ttfe_us"], 99) for r in rounds]
        totals = [median(r["total_us"]) for r in rounds]
        out[front] = {
            "ttfe_p50_ms": _ms(median(medians)),
            "ttfe_p99_ms": _ms(median(p99s)),
            "total_p50_ms": _ms(median(totals)),
            "samples": sum(len(r["ttfe_us"]) for r in rounds),
        }
    for front in out:
        if "A" in raw_ttfe and front != "A":
            diffs = [median(x["ttfe_us"]) - median(a["ttfe_us"]) for x, a in zip(raw_ttfe[front], raw_ttfe["A"])]
            out[front]["ttfe_added_vs_A_ms"] = _ms(median(diffs))
    return out


def summarize_session(raw: dict) -> dict[str, Any]:
    """Per front: `tools/call` latency as the agent sees it, and whole-session time; and
    mcp-trace's share of a call (B − A over B, at the median)."""
    if not raw:
        return {}
    out: dict[str, Any] = {"fronts": {}, "session_calls": raw.get("session_calls")}
    for front, calls in raw["calls"].items():
        ms = [c * 1000 for c in calls]
        sessions = [t * 1000 for t in raw["sessions"].get(front, [])]
        out["fronts"][front] = {
            "calls": len(ms),
            "call_p50_ms": median(ms),
            "call_p90_ms": percentile(ms, 90),
            "call_p99_ms": percentile(ms, 99),
            "sessions": len(sessions),
            "session_p50_ms": median(sessions),
        }
    a, b = out["fronts"].get("A"), out["fronts"].get("B")
    if a and b and b["call_p50_ms"]:
        added = b["call_p50_ms"] - a["call_p50_ms"]
        out["call_added_p50_ms"] = added
        out["filter_share_of_call"] = added / b["call_p50_ms"]
        out["session_added_p50_ms"] = b["session_p50_ms"] - a["session_p50_ms"] if a["session_p50_ms"] and b["session_p50_ms"] else None
    return out


def session_rows(session: dict) -> list[list[str]]:
    rows = []
    for front, s in session.get("fronts", {}).items():
        rows.append(
            [
                front,
                str(s["calls"]),
                _f(s["call_p50_ms"], ".3f"),
                _f(s["call_p90_ms"], ".3f"),
                _f(s["call_p99_ms"], ".3f"),
                str(s["sessions"]),
                _f(s["session_p50_ms"], ".1f"),
            ]
        )
    return rows


SESSION_HEADER = ["front", "tools/call", "call p50 ms", "p90 ms", "p99 ms", "sessions", "session p50 ms"]


# --------------------------------------------------------------------------- budget

BUDGET_CELL = "json-1k-c16"
CELL_SHORT = {"json-1k-c16": "1 KB call", "json-64k-c16": "64 KB call", "bigres-1k-c16": "1 MB JSON result"}
LATENCY_CELL = "json-1k-c1"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def budget(cells: dict, ttfe: dict, memory: dict, wasm_bytes: int, over_limit: int = 0, instructions: dict | None = None) -> list[dict[str, str]]:
    """The issue's budget lines, each with the measured figure and PASS/FAIL."""
    lines: list[dict[str, str]] = []
    counted = instructions or {}

    def instructions_ratio(cell: str, front: str, base: str) -> float | None:
        """base / front instructions per request at the cell's body size, when counted."""
        size = INSTRUCTION_SIZE_OF_CELL.get(cell)
        per = [((counted.get(f) or {}).get("by_size") or {}).get(size) for f in (front, base)]
        return per[1] / per[0] if None not in per else None

    def add(item: str, target: str, measured: str, ok: bool | None) -> None:
        lines.append({"budget": item, "target": target, "measured": measured, "verdict": _verdict(ok)})

    def get(cell: str, front: str, key: str) -> float | None:
        return cells.get(cell, {}).get(front, {}).get(key)

    def fmt(v: float | None, spec: str = ".3f", unit: str = "") -> str:
        return "n/a" if v is None else f"{v:{spec}}{unit}"

    def throughput(item: str, cell: str, front: str, base: str, floor: float) -> None:
        """Verdict on both bases the budget names: the measured throughput ratio, and the
        ratio the front's CPU cost per request implies (base CPU / front CPU: what the
        throughput ratio converges to when the front is the only bottleneck, and which
        disturbs less when other processes share the machine). PASS needs both."""
        ratio = get(cell, front, f"rps_x{base}")
        rounds = cells.get(cell, {}).get(front, {}).get(f"rps_x{base}_rounds") or []
        spread = f"rounds {min(rounds):.2f}–{max(rounds):.2f}; " if len(rounds) > 1 else ""
        cpu = get(cell, front, f"cpu_x{base}")
        implied = 1 / cpu if cpu else None
        measured = f"{fmt(ratio)} × {base} ({spread}CPU-cost basis {fmt(implied)}"
        counted_ratio = instructions_ratio(cell, front, base)
        measured += f"; instructions basis {counted_ratio:.3f})" if counted_ratio is not None else ")"
        # The job's floor (front M) on the same line: when it misses the target too, no
        # filter in B's layout that holds the body and tags the span meets it here.
        floor_ratio = get(cell, "M", f"rps_x{base}") if base != "M" else None
        if floor_ratio is not None:
            floor_cpu = get(cell, "M", f"cpu_x{base}")
            floor_counted = instructions_ratio(cell, "M", base)
            measured += (f"; job floor M: {fmt(floor_ratio)} × {base} (CPU-cost basis {fmt(1 / floor_cpu if floor_cpu else None)}"
                         + (f"; instructions basis {floor_counted:.3f})" if floor_counted is not None else ")"))
        ok = None if ratio is None else ratio >= floor and (implied is None or implied >= floor)
        add(item, f"≥ {floor:.2f} × {base}", measured, ok)

    for cell in ("json-200-c16", BUDGET_CELL):
        size = "200 B" if cell == "json-200-c16" else "1 KB"
        throughput(f"{size} tools/call, 16 conns, B vs N (native MCP filter)", cell, "B", "N", 1.00)
        throughput(f"{size} tools/call, 16 conns, B vs M (job floor)", cell, "B", "M", 0.85)
    throughput("64 KB tools/call, 16 conns, B vs bare", "json-64k-c16", "B", "A", 0.80)
    for cell, label in (("json-64k-c16", "64 KB"), ("json-1m-c16", "1 MB")):
        throughput(f"{label} tools/call, 16 conns, B ahead of N", cell, "B", "N", 1.00)
    meta = get("meta-1k-c16", "B", "rps_xN")
    if meta is not None:
        cpu = get("meta-1k-c16", "B", "cpu_xN")
        add(
            "1 KB, context in _meta only (own span reported), B vs N (reported)",
            "—",
            f"{fmt(meta)} × N (CPU-cost basis {fmt(1 / cpu if cpu else None)})",
            None,
        )
    added = get(LATENCY_CELL, "B", "p99_added_vs_A_ms")
    added_w = get(LATENCY_CELL, "B", "p99_added_vs_W_ms")
    add(
        "p99 latency added at 1 conn (1 KB), B − A",
        "≤ 0.15 ms",
        f"{fmt(added, '+.3f', ' ms')} (vs W: {fmt(added_w, '+.3f', ' ms')})",
        None if added is None else added <= 0.15,
    )
    for front in ("B", "B+"):
        t = ttfe.get(front, {}).get("ttfe_added_vs_A_ms")
        add(f"time to first SSE event, {front} − A", "within ±1 ms", fmt(t, "+.3f", " ms"), None if t is None else abs(t) <= 1.0)

    # Linear growth: the added CPU per request (B − A) at 1 KB, 64 KB, 1 MB. The cost per
    # extra KiB from 64 KiB to 1 MiB must not exceed 1.25 × that from 1 KiB to 64 KiB.
    c1, c64, c1m = (get(c, "B", "cpu_added_vs_A_us") for c in ("json-1k-c16", "json-64k-c16", "json-1m-c16"))
    big = get("bigres-1k-c16", "B", "cpu_added_vs_A_us")
    added_instructions = instructions_added_by_size(counted)
    if added_instructions:
        # Counted, not timed: the verdict does not move with the machine's load.
        i1, i64, i1m = added_instructions
        lo, hi = (i64 - i1) / 63, (i1m - i64) / 960
        add(
            "cost grows linearly with body size (added instructions/request, callgrind)",
            "per-KiB cost 64K→1M ≤ 1.25 × 1K→64K",
            f"B − A: {i1:,.0f} / {i64:,.0f} / {i1m:,.0f} at 1K / 64K / 1M; {lo:,.0f} → {hi:,.0f} per KiB ({hi / lo:.2f}×)",
            hi <= 1.25 * lo,
        )
    if None in (c1, c64, c1m):
        add("cost grows linearly with body size (added CPU/request)", "per-KiB cost 64K→1M ≤ 1.25 × 1K→64K", "n/a", None)
    else:
        lo = (c64 - c1) / 63
        hi = (c1m - c64) / 960
        add(
            "cost grows linearly with body size (added CPU/request)" + (" (reported; timed)" if added_instructions else ""),
            "per-KiB cost 64K→1M ≤ 1.25 × 1K→64K",
            f"{c1:.1f} / {c64:.1f} / {c1m:.1f} µs at 1K / 64K / 1M; {lo:.3f} → {hi:.3f} µs/KiB"
            + (" (1 MB bodies are over max_body_bytes: B passes them through unread)" if over_limit else "")
            + (f"; 1 MB JSON result: {big:.1f} µs ({(big - c1) / 1023:.3f} µs/KiB)" if big is not None else ""),
            None if added_instructions else hi <= 1.25 * max(lo, 0.05),
        )
    over_floor = [(c, get(c, "B", "cpu_added_vs_M_us")) for c in (BUDGET_CELL, "json-64k-c16", "bigres-1k-c16")]
    if any(v is not None for _, v in over_floor):
        add(
            "B's own cost over the job floor M (reported)",
            "—",
            "; ".join(f"{CELL_SHORT.get(c, c)}: {fmt(v, '+.1f', ' µs')}" for c, v in over_floor if v is not None) + " of Envoy CPU per request",
            None,
        )
    r1m = get("json-1m-c16", "B", "rps_xA")
    add("1 MB throughput, B vs bare (reported)", "—", f"{fmt(r1m)} × A", None)

    mem = memory.get("B")
    if mem and len(mem.get("points", [])) == 3:
        start, mid, end = mem["points"]
        rss_growth = end["rss_kib"] - mid["rss_kib"]
        wasm_growth = end["wasm_linear_kib"] - mid["wasm_linear_kib"]
        add(
            f"no memory growth over {end['requests'] // 1000}k requests (B, 2nd half)",
            "wasm linear memory +0, RSS ≤ +1 MiB",
            f"wasm {mid['wasm_linear_kib']}→{end['wasm_linear_kib']} KiB, RSS {rss_growth:+d} KiB "
            f"(whole run: wasm {start['wasm_linear_kib']}→{end['wasm_linear_kib']} KiB, RSS {end['rss_kib'] - start['rss_kib']:+d} KiB)",
            wasm_growth == 0 and rss_growth <= 1024,
        )
    else:
        add("no memory growth (B)", "wasm linear memory +0, RSS ≤ +1 MiB", "n/a", None)
    add(".wasm size", "≤ 400 KiB (409600 B)", f"{wasm_bytes} B ({wasm_bytes / 1024:.1f} KiB)", wasm_bytes <= 400 * 1024)
    return lines


# --------------------------------------------------------------------------- tables


def _f(v: float | None, spec: str) -> str:
    return "—" if v is None else f"{v:{spec}}"


def cell_rows(cells: dict, fronts: list[str]) -> list[list[str]]:
    rows = []
    labels = {c.key: c.label for c in CELLS}
    for cell_key, per_front in cells.items():
        for front in fronts:
            s = per_front.get(front)
            if not s:
                continue
            rows.append(
                [
                    labels.get(cell_key, cell_key),
                    front,
                    _f(s["rps"], ".0f"),
                    _f(s.get("rps_xA"), ".3f"),
                    _f(s.get("rps_xW"), ".3f"),
                    _f(s.get("rps_xM"), ".3f"),
                    _f(s.get("rps_xN"), ".3f"),
                    _f(s["p50_ms"], ".3f"),
                    _f(s["p99_ms"], ".3f"),
                    _f(s["cpu_per_10k_s"], ".3f"),
                    _f(s.get("cpu_xA"), ".2f"),
                    _f(s.get("cpu_xW"), ".2f"),
                    _f(1 / s["cpu_xM"] if s.get("cpu_xM") else None, ".3f"),
                    _f(1 / s["cpu_xN"] if s.get("cpu_xN") else None, ".3f"),
                    _f(s["front_util"] * 100, ".0f"),
                    _f(s["foreign_util"] * 100, ".0f"),
                    str(s["errors"]),
                ]
            )
    return rows


CELL_HEADER = [
    "load",
    "front",
    "req/s",
    "×A",
    "×W",
    "×M",
    "×N",
    "p50 ms",
    "p99 ms",
    "CPU s/10k",
    "CPU ×A",
    "CPU ×W",
    "×M CPU basis",
    "×N CPU basis",
    "front CPU %",
    "other CPU %",
    "errors",
]


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    prev = None
    for r in rows:
        first = r[0] if r[0] != prev else ""
        prev = r[0]
        out.append("  ".join(c.ljust(w) for c, w in zip([first, *r[1:]], widths)))
    return "\n".join(out)


def md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out)


def ttfe_rows(ttfe: dict, fronts: list[str]) -> list[list[str]]:
    return [
        [f, _f(t["ttfe_p50_ms"], ".3f"), _f(t["ttfe_p99_ms"], ".3f"), _f(t.get("ttfe_added_vs_A_ms"), "+.3f"), _f(t["total_p50_ms"], ".3f"), str(t["samples"])]
        for f in fronts
        if (t := ttfe.get(f))
    ]


TTFE_HEADER = ["front", "first event p50 ms", "p99 ms", "p50 − A ms", "whole response p50 ms", "samples"]


def memory_rows(memory: dict) -> list[list[str]]:
    rows = []
    for front, m in memory.items():
        for label, p in zip(("before", "half-way", "after"), m["points"]):
            rows.append(
                [
                    front,
                    label,
                    str(p["requests"]),
                    str(p["rss_kib"]),
                    str(p["wasm_vms"]),
                    str(p["wasm_linear_kib"]),
                    str(p["wasm_rss_kib"]),
                    str(p.get("server.memory_allocated", 0) // 1024),
                ]
            )
    return rows


MEMORY_HEADER = ["front", "when", "requests", "RSS KiB", "wasm VMs", "wasm linear KiB", "wasm resident KiB", "heap (tcmalloc) KiB"]
BUDGET_HEADER = ["budget", "target", "measured", "verdict"]


def budget_rows(lines: list[dict[str, str]]) -> list[list[str]]:
    return [[b["budget"], b["target"], b["measured"], b["verdict"]] for b in lines]


PROBE_BASE = "none"
PROBE_DESCRIPTIONS = {
    "now": "proxy_get_current_time_nanoseconds (returns a number)",
    "increment_metric": "proxy_increment_metric",
    "get_header": "proxy_get_header_map_value, one request header (returns bytes)",
    "get_header_pairs": "proxy_get_header_map_pairs, all request headers",
    "set_header": "proxy_replace_header_map_value, a request header",
    "get_property": "proxy_get_property request.protocol",
    "get_filter_state": "proxy_get_property filter_state.wasm.<key>",
    "set_property": "proxy_set_property, a new key (one filter-state object)",
    "get_body": "proxy_get_buffer_bytes, the whole 1 KB request body",
}


def summarize_probe(raw: dict[str, list[dict]], repeat: int) -> dict[str, dict[str, Any]]:
    """Per call kind: (CPU µs/request − the no-call probe's, same round) / repeat."""
    out: dict[str, dict[str, Any]] = {}
    for call, runs in raw.items():
        if call == PROBE_BASE:
            continue
        per_call = [d * 100.0 / repeat for d in paired_values(raw, call, PROBE_BASE, "cpu_per_10k_s", op="diff")]  # s/10k -> µs/request: ×100
        out[call] = {
            "us_per_call": median(per_call),
            "min": min(per_call) if per_call else None,
            "max": max(per_call) if per_call else None,
            "rounds": len(per_call),
        }
    return out


PROBE_HEADER = ["host call", "µs of Envoy CPU per call (median)", "rounds' range"]


def probe_rows(probe: dict) -> list[list[str]]:
    return [
        [PROBE_DESCRIPTIONS.get(call, call), _f(v["us_per_call"], ".2f"), f"{_f(v['min'], '.2f')} … {_f(v['max'], '.2f')}"]
        for call, v in probe.items()
    ]


SWEEP_SIZES = (str(64 * 1024), str(1024 * 1024))
# Counted at one connection, sequentially: a basis for the 16-connection lines' ratios
# that the machine's load does not move (not the same load, so reported, not judged).
INSTRUCTION_SIZE_OF_CELL = {"json-1k-c16": "1024", "json-64k-c16": SWEEP_SIZES[0], "json-1m-c16": SWEEP_SIZES[1]}


def instructions_added_by_size(counted: dict) -> tuple[float, float, float] | None:
    """B − A instructions per request at 1 KB, 64 KB and 1 MB, when both were swept."""
    a, b = (counted.get(f, {}).get("by_size") or {} for f in ("A", "B"))
    sizes = ("1024", *SWEEP_SIZES)
    if not all(size in a and size in b for size in sizes):
        return None
    i1, i64, i1m = (b[size] - a[size] for size in sizes)
    return i1, i64, i1m


def instruction_rows(counted: dict) -> list[list[str]]:
    b = counted.get("B", {}).get("instructions_per_request")
    rows = []
    for front, c in counted.items():
        per = c["instructions_per_request"]
        by_size = c.get("by_size") or {}
        rows.append([front, f"{per:,.0f}", _f(per / b if b else None, ".3f"), _f(b / per if b else None, ".3f"), str(c["requests"])]
                    + [f"{by_size[size]:,.0f}" if size in by_size else "—" for size in SWEEP_SIZES])
    return rows


INSTRUCTION_HEADER = ["front", "instructions per request", "× B", "B's throughput ratio this implies (front / B)", "requests counted",
                      "at 64 KB", "at 1 MB"]


def instruction_section(results: dict) -> list[str]:
    counted = results.get("instructions") or {}
    if not counted:
        return []
    return [
        "## Instructions per request (callgrind)",
        "",
        "Each front alone under valgrind's callgrind, warmed up, then sequential 1 KB `tools/call` requests on one "
        "connection: every instruction the Envoy process executes (all threads; Envoy, V8 and the filter's JIT code), "
        "per request. Unlike CPU time this does not move with the machine's speed, so small differences between "
        "builds show; it is not time (a cache miss costs more than an add). A and B are also counted at 64 KB "
        "(a sixth as many requests) and 1 MB (20 requests), each after 3 uncounted ones.",
        "",
        md_table(INSTRUCTION_HEADER, instruction_rows(counted)),
        "",
    ]


def session_section(results: dict) -> list[str]:
    session = results.get("session") or {}
    if not session:
        return []
    share = session.get("filter_share_of_call")
    added = session.get("call_added_p50_ms")
    return [
        "## What a user sees",
        "",
        "The official `mcp` SDK client (2025-11-25 session: initialize, `Mcp-Session-Id`, answers as SSE) against a real "
        "FastMCP server (tests/peers/mcp_server.py), through bare Envoy (A) and through mcp-trace (B), the two taking "
        "turns call by call; then whole sessions (connect, initialize, list tools, "
        f"{session.get('session_calls')} calls, close), taking turns the same way.",
        "",
        md_table(SESSION_HEADER, session_rows(session)),
        "",
        f"mcp-trace's share of a `tools/call` as the agent sees it: {_f(added, '+.3f')} ms at the median "
        f"({_f(share * 100 if share is not None else None, '.1f')} % of the call); a whole session: "
        f"{_f(session.get('session_added_p50_ms'), '+.1f')} ms.",
        "",
    ]


def markdown(results: dict) -> str:
    m = results["machine"]
    s = results["settings"]
    fronts = s["fronts"]
    parts = [
        "# mcp-trace benchmark",
        "",
        f"Machine: {m['nproc']} CPUs, {m['cpu_model']}, Linux {m['kernel']}; {m['envoy_version']}; "
        f"{m['wrk']}; {m['h2load']}; repo {m['git']}; {m['date']}.",
        "",
        f"Settings: all fronts running side by side, one loaded at a time; each load run {s['rounds']} times per front "
        f"for {s['cell_seconds']} s, the fronts taking turns run by run (order reversed every other round); "
        f"front --concurrency {s['concurrency']}; pinning: {s['pin_description']}; "
        f"memory run {s['memory_requests']} requests; {s['ttfe_requests']} SSE requests per front and round. "
        f"Wall time {results['wall_seconds']:.0f} s.",
        "",
        "Fronts: " + "; ".join(f"**{f}** {results['front_descriptions'][f]}" for f in fronts) + ".",
        "",
        "## Budget",
        "",
        md_table(BUDGET_HEADER, budget_rows(results["budget"])),
        "",
        "## Loads",
        "",
        "Medians over rounds. ×A / ×W / ×M / ×N: per-round throughput ratio to the bare, empty-wasm, job-floor and "
        "native-MCP front, median; ×M and ×N CPU basis: the ratio the CPU cost per request implies (their CPU / this front's). "
        "CPU s/10k: the front Envoy's CPU seconds (user+system, all threads) per 10 000 requests. "
        "front CPU %: its CPU use during the cell (100 = one core). other CPU %: CPU used during the "
        "cell by processes that are not part of the bench (noise). Latency from wrk (HTTP/1.1) only.",
        "",
        md_table(CELL_HEADER, cell_rows(results["cells"], fronts)),
        "",
        "## Time to first SSE event",
        "",
        f"POST through each front to a server that sends one event at once and the last one {s['sse_gap_ms']:g} ms later.",
        "",
        md_table(TTFE_HEADER, ttfe_rows(results["ttfe"], fronts)),
        "",
        *session_section(results),
        *instruction_section(results),
        "## Memory",
        "",
        "Envoy 1.40 has no stat for a wasm VM's memory; the wasm linear memory is read from "
        "/proc/<pid>/smaps (the committed mapping below each V8 wasm memory reservation), summed over VMs.",
        "",
        md_table(MEMORY_HEADER, memory_rows(results["memory"])),
        "",
        "## Wasm",
        "",
        "\n".join(f"- {name}: {size} bytes" for name, size in results["wasm_sizes"].items()),
        "",
    ]
    if results.get("probe"):
        repeat = results["settings"]["probe_repeat"]
        parts += [
            "## What Envoy charges per host call",
            "",
            f"Front W with its HCM filter replaced by bench/probe-filter, which makes one kind of host call {repeat} times "
            f"per request (1 KB tools/call, JSON, 16 connections). Per round: (front CPU per request − the probe making "
            f"no call) / {repeat}; median over rounds. The whole-VM callbacks themselves (on_request_headers, …) are in W.",
            "",
            md_table(PROBE_HEADER, probe_rows(results["probe"])),
            "",
        ]
    if results.get("notes"):
        parts += ["## Notes", "", *[f"- {n}" for n in results["notes"]], ""]
    return "\n".join(parts)
