#!/usr/bin/env python3
"""Charts a `secureops-bench soak` table: latency, server RSS and server
descriptors against time. usage: soak-chart.py soak.txt soak.png"""
import sys


def rows(path):
    """The interval rows: lines whose first field is a time like `10s`."""
    for line in open(path):
        fields = line.split()
        if len(fields) >= 12 and fields[0].endswith("s") and fields[0][:-1].isdigit():
            yield {
                "t": int(fields[0][:-1]),
                "rate": float(fields[1].replace(",", "")),
                "p50": float(fields[2]),
                "p99": float(fields[3]),
                "max": float(fields[4]),
                "rss": float(fields[5]) if fields[5] != "-" else None,
                "fds": int(fields[6]) if fields[6] != "-" else None,
            }


def main():
    source, target = sys.argv[1], sys.argv[2]
    data = list(rows(source))
    if not data:
        print(f"no soak rows in {source}")
        return 1
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart (python3 -m pip install matplotlib)")
        return 0
    t = [r["t"] for r in data]
    figure, (latency, rss, fds) = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    latency.plot(t, [r["p50"] for r in data], label="p50")
    latency.plot(t, [r["p99"] for r in data], label="p99")
    latency.plot(t, [r["max"] for r in data], label="max", alpha=0.5)
    latency.set_ylabel("publish → delivery (ms)")
    latency.set_ylim(bottom=0)
    latency.legend(loc="upper right")
    rss.plot(t, [r["rss"] for r in data], color="tab:green")
    rss.set_ylabel("server RSS (MiB)")
    rss.set_ylim(bottom=0)
    fds.plot(t, [r["fds"] for r in data], color="tab:red")
    fds.set_ylabel("server descriptors")
    fds.set_xlabel("seconds")
    figure.suptitle(open(source).readline().strip()[:110], fontsize=8)
    figure.tight_layout()
    figure.savefig(target, dpi=100)
    print(f"chart: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
