#!/usr/bin/env python3
"""Summarises a scripts/compare.sh run: medians, ratios, targets, chart.

    python3 scripts/bench-report.py OUT_DIR

Reads OUT_DIR/results.jsonl (one line per run: workload, point, rep,
target, exit status and the tool's --json object) and OUT_DIR/agreement.txt,
prints markdown tables, writes OUT_DIR/summary.md and, when matplotlib is
available, OUT_DIR/fanout.png (deliveries/s against subscribers).
"""
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

out = Path(sys.argv[1])
runs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
groups = defaultdict(list)
for run in runs:
    groups[(run["workload"], run["point"], run["target"])].append(run)


def median(workload, point, target, key):
    values = [r["result"][key] for r in groups.get((workload, point, target), [])
              if r["result"] and r["result"].get(key) is not None]
    return statistics.median(values) if values else None


def total(workload, point, target, key):
    return sum(r["result"].get(key) or 0 for r in groups.get((workload, point, target), []) if r["result"])


def points(workload):
    seen = []
    for run in runs:
        if run["workload"] == workload and run["point"] not in seen:
            seen.append(run["point"])
    return seen


def rate(v):
    if v is None:
        return "-"
    return f"{v / 1e6:.2f} M" if v >= 1e6 else f"{v / 1e3:.0f} k"


def us(v):
    if v is None:
        return "-"
    return f"{v / 1000:.1f} ms" if v >= 10000 else f"{v:.0f} µs"


def ratio(a, b):
    return f"{a / b:.2f}×" if a and b else "-"


def reps(workload, point, target):
    return len(groups.get((workload, point, target), []))


lines = []
emit = lines.append

def fanout_pacing():
    """How the full-speed fan-out runs were paced and read, from their JSON."""
    seen = {(r["result"].get("backlog"), r["result"].get("receiver")) for r in runs
            if r["workload"] == "fanout" and r["result"]}
    if len(seen) != 1:
        return "mixed settings"
    backlog, receiver = seen.pop()
    ahead = f"at most {backlog} ahead of the average subscriber" if backlog else "no bound on how far ahead"
    return f"{ahead}, tool reading with {receiver or 'epoll'}"


NAMES = {"secureops": "secureopsd io_uring", "secureops-epoll": "secureopsd epoll",
         "secureops-nojournal": "secureopsd io_uring, no journal",
         "secureops-threadjournal": "secureopsd io_uring, journal by a thread", "redis": "Redis"}
present = [t for t in ("secureops", "secureops-epoll", "secureops-nojournal", "secureops-threadjournal", "redis")
           if any(r["target"] == t for r in runs)]
ours = [t for t in present if t != "redis"]

emit(f"### Fan-out: deliveries/s (256-byte alerts, 1 publisher, 64 in flight, {fanout_pacing()}; median)\n")
emit("| subscribers | " + " | ".join(NAMES[t] for t in present) + " | " + " | ".join(f"{NAMES[t]} / Redis" for t in ours)
     + " | p50 / p99 / p99.9 (" + ", ".join(NAMES[t] for t in present) + ") | lost | runs |")
emit("|---:|" + "---:|" * len(present) + "---:|" * len(ours) + "---|---|---:|")
chart = []
for p in points("fanout"):
    rates = {t: median("fanout", p, t, "deliveriesPerSec") for t in present}
    chart.append((int(p), rates.get("secureops"), rates.get("redis"), median("fanout", p, "secureops", "toolCpuPercent"),
                  median("fanout", p, "secureops", "serverCpuPercent"), median("fanout", p, "redis", "serverCpuPercent"),
                  rates.get("secureops-epoll")))
    lat = lambda t: " / ".join(us(median("fanout", p, t, k)) for k in ("p50Us", "p99Us", "p999Us"))
    emit(f"| {int(p):,} | " + " | ".join(rate(rates[t]) for t in present)
         + " | " + " | ".join(ratio(rates[t], rates.get("redis")) for t in ours)
         + " | " + "; ".join(lat(t) for t in present)
         + " | " + " / ".join(str(total("fanout", p, t, "lost")) for t in present)
         + f" | {reps('fanout', p, present[0])} |")

if points("light"):
    emit("\n### Latency at light load (publish to delivery; median of runs)\n")
    emit("| subscribers @ rate | secureopsd p50 / p99 / p99.9 / max | Redis p50 / p99 / p99.9 / max | lost (s/R) |")
    emit("|---|---|---|---|")
    for p in points("light"):
        lat = lambda t: " / ".join(us(median("light", p, t, k)) for k in ("p50Us", "p99Us", "p999Us", "maxUs"))
        emit(f"| {p} | {lat('secureops')} | {lat('redis')} | {total('light', p, 'secureops', 'lost')} / {total('light', p, 'redis', 'lost')} |")

emit("\n### Memory (server RSS, median)\n")
emit("| subscribers | secureopsd per idle subscriber | Redis per idle subscriber | secureopsd RSS subscribed / at end | Redis RSS subscribed / at end |")
emit("|---:|---:|---:|---|---|")
mib = lambda v: f"{v / 1048576:.1f} MiB" if v else "-"
byt = lambda v: f"{v:,.0f} B" if v is not None else "-"
for p in points("fanout"):
    emit(f"| {int(p):,} | {byt(median('fanout', p, 'secureops', 'rssPerSubscriberBytes'))} "
         f"| {byt(median('fanout', p, 'redis', 'rssPerSubscriberBytes'))} "
         f"| {mib(median('fanout', p, 'secureops', 'serverRssSubscribedBytes'))} / {mib(median('fanout', p, 'secureops', 'serverRssEndBytes'))} "
         f"| {mib(median('fanout', p, 'redis', 'serverRssSubscribedBytes'))} / {mib(median('fanout', p, 'redis', 'serverRssEndBytes'))} |")

if points("connect"):
    emit("\n### Accept storm: connections, each subscribing at once (median)\n")
    emit("| connections | secureopsd all subscribed | Redis all subscribed | secureopsd connections/s | Redis connections/s |")
    emit("|---:|---:|---:|---:|---:|")
    for p in points("connect"):
        ms = lambda t: f"{median('connect', p, t, 'allSubscribedSec') * 1000:.0f} ms" if median('connect', p, t, 'allSubscribedSec') else "-"
        emit(f"| {int(p):,} | {ms('secureops')} | {ms('redis')} | {rate(median('connect', p, 'secureops', 'connectionsPerSec'))} "
             f"| {rate(median('connect', p, 'redis', 'connectionsPerSec'))} |")

emit("\n### rpc: PING requests/s (connections × pipeline; median)\n")
emit("| connections × pipeline | " + " | ".join(NAMES[t] for t in present) + " | " + " | ".join(f"{NAMES[t]} / Redis" for t in ours)
     + " | p50 / p99 (" + ", ".join(NAMES[t] for t in present) + ") | server CPU |")
emit("|---|" + "---:|" * len(present) + "---:|" * len(ours) + "---|---|")
for p in points("rpc"):
    rates = {t: median("rpc", p, t, "requestsPerSec") for t in present}
    lat = lambda t: " / ".join(us(median("rpc", p, t, k)) for k in ("p50Us", "p99Us"))
    emit(f"| {p.replace('x', ' × ')} | " + " | ".join(rate(rates[t]) for t in present)
         + " | " + " | ".join(ratio(rates[t], rates.get("redis")) for t in ours)
         + " | " + "; ".join(lat(t) for t in present)
         + " | " + " / ".join(f"{median('rpc', p, t, 'serverCpuPercent') or 0:.0f}%" for t in present) + " |")

def syscall_rows(workload, unit_key, unit_name):
    """Deliveries (or requests) per second, the server's CPU time and its
    system calls per 1,000 of them, per target."""
    for p in points(workload):
        for t in present:
            group = [r for r in groups.get((workload, p, t), []) if r["result"] and r.get("syscalls")]
            if not group:
                continue
            per_unit = lambda r: r["result"][unit_key] * r["result"]["elapsedSec"]
            calls = statistics.median(r["syscalls"] / per_unit(r) * 1000 for r in group)
            cpu_ns = statistics.median(r["result"]["serverCpuPercent"] / 100 * r["result"]["elapsedSec"] / per_unit(r) * 1e9 for r in group)
            emit(f"| {workload.split('-')[1]} {p} | {NAMES[t]} | {rate(median(workload, p, t, unit_key))} | {cpu_ns:.0f} ns | {calls:,.1f} | {len(group)} |")

if points("syscalls-fanout") or points("syscalls-rpc"):
    emit("\n### The backends side by side: server CPU and system calls (perf stat -e raw_syscalls:sys_enter on the server; median)\n")
    emit("| workload | server | rate | server CPU per delivery / request | system calls per 1,000 | runs |")
    emit("|---|---|---:|---:|---:|---:|")
    syscall_rows("syscalls-fanout", "deliveriesPerSec", "delivery")
    syscall_rows("syscalls-rpc", "requestsPerSec", "request")

if "secureops-nojournal" in present:
    emit("\n### What the journal costs: secureopsd io_uring with the journal (the default, --journal-sync interval) over --no-journal, same run (median)\n")
    emit("| workload | with journal | without | ratio |")
    emit("|---|---:|---:|---:|")
    for workload, key in (("fanout", "deliveriesPerSec"), ("rpc", "requestsPerSec")):
        for p in points(workload):
            on, off = median(workload, p, "secureops", key), median(workload, p, "secureops-nojournal", key)
            if on and off:
                emit(f"| {workload} {p} | {rate(on)} | {rate(off)} | {ratio(on, off)} |")

if "secureops-threadjournal" in present:
    emit("\n### Who writes the journal: the loop through its io_uring ring (the default) over a writer thread, same run (median)\n")
    emit("| workload | loop, io_uring | writer thread | ratio |" + (" no journal |" if "secureops-nojournal" in present else ""))
    emit("|---|---:|---:|---:|" + ("---:|" if "secureops-nojournal" in present else ""))
    for workload, key in (("fanout", "deliveriesPerSec"), ("rpc", "requestsPerSec")):
        for p in points(workload):
            ring, thread = median(workload, p, "secureops", key), median(workload, p, "secureops-threadjournal", key)
            off = median(workload, p, "secureops-nojournal", key) if "secureops-nojournal" in present else None
            if ring and thread:
                emit(f"| {workload} {p} | {rate(ring)} | {rate(thread)} | {ratio(ring, thread)} |" + (f" {rate(off)} |" if off else ""))

agreement = out / "agreement.txt"
if agreement.exists() and agreement.read_text().strip():
    # Lines: "<label> bench {json}" (secureops-bench) or "<label> mode=... k=v"
    # (loadgen.c); the label is key=value words: subscribers= or
    # redis-subscribers= or connections=, and receiver= for fan-out pairs.
    series = defaultdict(lambda: {"bench": [], "loadgen": []})
    for line in agreement.read_text().splitlines():
        if " bench " in line:
            label, _, body = line.partition(" bench ")
            if not body.strip().startswith("{"):
                continue
            r = json.loads(body)
            value = r["deliveriesPerSec"] if r["mode"] == "fanout" else r["requestsPerSec"]
            series[(r["mode"], label)]["bench"].append(value)
        elif " mode=" in line:
            label, _, rest = line.partition(" mode=")
            kv = dict(part.split("=", 1) for part in ("mode=" + rest).split())
            value = float(kv["deliveries_per_sec"] if kv["mode"] == "fanout" else kv["requests_per_sec"])
            series[(kv["mode"], label)]["loadgen"].append(value)
    emit("\n### Agreement with the independent C load generator (same server build, same pinning; median)\n")
    emit("| workload | secureops-bench | scripts/loadgen/loadgen.c | difference | every run (bench; loadgen) |")
    emit("|---|---:|---:|---:|---|")
    for (mode, label), values in series.items():
        b, c = values["bench"], values["loadgen"]
        if b and c:
            mb, mc = statistics.median(b), statistics.median(c)
            words = dict(word.split("=", 1) for word in label.split())
            server = "Redis" if "redis-subscribers" in words else "secureopsd"
            count = words.get("subscribers") or words.get("redis-subscribers") or words.get("connections")
            receiver = words.get("receiver", "epoll")
            name = (f"{server} fanout {int(count):,} subscribers, 256 B, both reading with {receiver}" if mode == "fanout"
                    else f"{server} rpc ping {count} × 16")
            emit(f"| {name} | {rate(mb)} | {rate(mc)} | {(mb - mc) / mc * 100:+.1f}% "
                 f"| {', '.join(rate(x) for x in b)}; {', '.join(rate(x) for x in c)} |")

text = "\n".join(lines) + "\n"
(out / "summary.md").write_text(text)
print(text)

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    xs = [c[0] for c in chart]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.plot(xs, [(c[1] or 0) / 1e6 for c in chart], marker="o", label="secureopsd (io_uring)")
    if any(c[6] for c in chart):
        ax.plot(xs, [(c[6] or 0) / 1e6 for c in chart], marker="^", label="secureopsd (epoll)")
    ax.plot(xs, [(c[2] or 0) / 1e6 for c in chart], marker="s", label="Redis 7 pub/sub")
    ax.set_xscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{x:,}" for x in xs])
    ax.set_xlabel("subscribers")
    ax.set_ylabel("deliveries/s (millions)")
    ax.set_title("Fan-out, 256-byte alerts, server pinned to one core (median)")
    ax.set_ylim(0, max([(c[1] or 0) for c in chart] + [(c[2] or 0) for c in chart] + [(c[6] or 0) for c in chart] + [1]) / 1e6 * 1.15)
    # Say which side each point was bound by: a server at ~100% of its core
    # is the limit; a tool at ~100% of its core means the server had room.
    for x, s_rate, r_rate, tool_cpu, s_cpu, r_cpu, _ in chart:
        if s_rate and s_cpu is not None:
            note = f"server {s_cpu:.0f}%" + (f", tool {tool_cpu:.0f}%" if tool_cpu and tool_cpu > 90 else "")
            ax.annotate(note, (x, s_rate / 1e6), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=7)
        if r_rate and r_cpu is not None:
            ax.annotate(f"server {r_cpu:.0f}%", (x, r_rate / 1e6), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=7)
    ax.text(0.01, 0.01, "labels: CPU of the server's core (and of the tool's, when above 90%)",
            transform=ax.transAxes, fontsize=7, color="gray")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="center right")
    fig.tight_layout()
    fig.savefig(out / "fanout.png")
    print(f"chart: {out / 'fanout.png'}")
except ImportError:
    print("matplotlib is not installed: no chart (python3 -m pip install matplotlib)")
