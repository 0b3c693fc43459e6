#!/usr/bin/python3
"""run.py: the load-tool half of `make bench`.

Starts a fresh dhtd (bin/dhtd run --no-bootstrap on loopback, in memory)
and, when python3-libtorrent is installed, a libtorrent 2.0.8 node
(ltserve.py), fills both routing tables, then measures both with the same
load tool (bin/dhtd-bench load) in the same run, interleaved, REPS times,
and prints medians and the dhtd/libtorrent ratios.

Configured for the measurement (each node's own limits would otherwise be
what is measured): dhtd --reply-budget 0 (the 1 MiB/s default reply byte
budget caps ping at ~15k answers/s) and --rate-limit 0 (loopback sources
are exempt anyway); libtorrent dht_upload_rate_limit and
dht_block_ratelimit raised (ltserve.py).

    /usr/bin/python3 testdata/bench/run.py [--reps 3] [--duration 5s] [--peers 0]
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BENCH = os.path.join(ROOT, "bin", "dhtd-bench")
DHTD = os.path.join(ROOT, "bin", "dhtd")
LTSERVE = os.path.join(ROOT, "testdata", "bench", "ltserve.py")


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def load(target, pid, query, args, extra=()):
    cmd = [BENCH, "load", "--target", target, "--query", query, "--pid", str(pid), "--json",
           "--sockets", str(args.sockets), "--window", str(args.window), "--sources", "4",
           "--duration", args.duration, "--warmup", "1s"] + list(extra)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def free_tcp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_dhtd():
    """dhtd run as deployed (metrics HTTP on, as by default), in memory."""
    port, mport = free_port(), free_tcp_port()
    p = subprocess.Popen([DHTD, "run", "--no-bootstrap", "--listen", "127.0.0.1:%d" % port,
                          "--storage", "memory", "--metrics-listen", "127.0.0.1:%d" % mport,
                          "--reply-budget", "0", "--rate-limit", "0", "--log-level", "warn"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    if p.poll() is not None:
        sys.exit("dhtd exited at start")
    return p, "127.0.0.1:%d" % port, "http://127.0.0.1:%d" % mport


def table_size(admin):
    with urllib.request.urlopen(admin + "/debug/routing", timeout=5) as r:
        d = json.load(r)
    return d["good"] + d["questionable"], len(d["buckets"])


def start_lt(fill):
    try:
        subprocess.run(["/usr/bin/python3", "-c", "import libtorrent"], check=True, capture_output=True)
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None, None, 0
    port = free_port()
    p = subprocess.Popen(["/usr/bin/python3", LTSERVE, "--listen", "127.0.0.1:%d" % port, "--fill", str(fill)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline().split()
    if len(line) < 8:
        p.kill()
        return None, None, 0
    return p, line[1], int(line[7])


def stop(p):
    if p is None:
        return
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()


def med(rows, key):
    return statistics.median(r[key] for r in rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", default="5s")
    ap.add_argument("--sockets", type=int, default=16)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--fill", type=int, default=128, help="responders offered to libtorrent's routing table")
    ap.add_argument("--idle-fill", type=int, default=464,
                    help="responders offered to dhtd's routing table (464: 32 full buckets of an extended table)")
    ap.add_argument("--open-rate", type=int, default=40000, help="open-loop rate for the loss check")
    ap.add_argument("--peers", type=int, default=0, help="also store this many peers on dhtd and report its RSS")
    ap.add_argument("--no-lt", action="store_true", help="skip libtorrent")
    args = ap.parse_args()

    dp, dt, admin = start_dhtd()
    lp = None
    try:
        # Fill the table (no load: --duration 10ms), then the idle RSS.
        fill = subprocess.run([BENCH, "load", "--target", dt, "--fill", str(args.idle_fill), "--query", "ping",
                               "--duration", "10ms", "--warmup", "0s", "--json"],
                              check=True, capture_output=True, text=True).stdout
        dnodes = json.loads(fill).get("target_table_sample", 0)
        time.sleep(3)
        idle_rss = rss_kib(dp.pid)
        tnodes, tbuckets = table_size(admin)
        lt_live = 0
        if not args.no_lt:
            lp, lt_target, lt_live = start_lt(args.fill)
        print("dhtd %s pid %d: table %d nodes in %d buckets, find_node answers carry %d nodes; idle RSS %.1f MiB"
              % (dt, dp.pid, tnodes, tbuckets, dnodes, idle_rss / 1024))
        if lp:
            print("libtorrent %s pid %d: %d nodes in its table" % (lt_target, lp.pid, lt_live))
        else:
            print("libtorrent: not measured (python3-libtorrent missing or --no-lt)")
        print("load: %d sockets x window %d, 4 source addresses, %s measured after 1s warm-up; medians of %d"
              % (args.sockets, args.window, args.duration, args.reps))
        rows = {}
        for rep in range(args.reps):
            for q in ("ping", "find_node", "get_peers", "get"):
                rows.setdefault(("dhtd", q, "closed"), []).append(load(dt, dp.pid, q, args))
                if lp and q in ("ping", "find_node"):
                    rows.setdefault(("lt", q, "closed"), []).append(load(lt_target, lp.pid, q, args))
            for q in ("ping", "find_node"):
                extra = ("--rate", str(args.open_rate))
                rows.setdefault(("dhtd", q, "open"), []).append(load(dt, dp.pid, q, args, extra))
                if lp:
                    rows.setdefault(("lt", q, "open"), []).append(load(lt_target, lp.pid, q, args, extra))
        hdr = "%-10s %-10s %-6s %11s %13s %8s %9s %9s %9s %8s" % (
            "node", "query", "loop", "answers/s", "answers/CPUs", "loss%", "p50 µs", "p99 µs", "p99.9 µs", "RSS MiB")
        print(hdr)
        print("-" * len(hdr))
        for (node, q, mode), rs in sorted(rows.items(), key=lambda kv: (kv[0][2], kv[0][1], kv[0][0])):
            print("%-10s %-10s %-6s %11.0f %13.0f %8.3f %9.0f %9.0f %9.0f %8.1f" % (
                "dhtd" if node == "dhtd" else "libtorrent", q, mode, med(rs, "answers_per_s"),
                med(rs, "answers_per_cpu_s"), med(rs, "loss_pct"), med(rs, "p50_us"), med(rs, "p99_us"),
                med(rs, "p999_us"), med(rs, "server_rss_kib") / 1024))
        if lp:
            print()
            for q in ("ping", "find_node"):
                for mode in ("closed", "open"):
                    d, l = rows[("dhtd", q, mode)], rows[("lt", q, mode)]
                    ratios = [a["answers_per_cpu_s"] / b["answers_per_cpu_s"] for a, b in zip(d, l)]
                    print("%-9s %-6s answers per server CPU-second, dhtd/libtorrent: median %.2fx (runs: %s)" % (
                        q, mode, med(d, "answers_per_cpu_s") / med(l, "answers_per_cpu_s"),
                        ", ".join("%.2f" % r for r in ratios)))
        if args.peers > 0:
            ips = 500
            ihs = (args.peers + ips - 1) // ips
            out = subprocess.run([BENCH, "announce", "--target", dt, "--pid", str(dp.pid), "--ips", str(ips),
                                  "--infohashes", str(ihs)], check=True, capture_output=True, text=True).stdout
            print()
            print(out.strip())
    finally:
        stop(lp)
        stop(dp)


if __name__ == "__main__":
    main()
