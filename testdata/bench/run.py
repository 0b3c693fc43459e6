#!/usr/bin/python3
"""run.py: the load-tool half of `make bench`, a fair side-by-side run.

Starts, on loopback:
  - 16 live filler nodes (bin/dhtd-bench filler) that stay up and keep
    answering: the shared routing table of both nodes;
  - dhtd (bin/dhtd run --no-bootstrap --storage memory --rate-limit 0
    --reply-budget 0), offered the fillers;
  - libtorrent 2.0.8 (ltserve.py, python3-libtorrent) when installed, with
    the same fillers added (--nodes), its DHT rate limits
    (dht_upload_rate_limit, dht_block_ratelimit) and upload limits lifted
    and alerts off;
  - two UDP echo servers, the baselines: a bare one (bin/dhtd-bench echo
    --bare: one ReadFromUDPAddrPort and one WriteToUDPAddrPort per
    datagram, the loop anyone would write) and a batched one
    (bin/dhtd-bench echo: recvmmsg/sendmmsg in batches of 32, the socket
    I/O of dhtd's own read loop).
Each server is pinned to one core (taskset -c SERVER_CPU), the load tool
and the fillers to the other (LOAD_CPU). Both nodes are seeded with the
same 50 peers on one infohash and one 1,000-byte immutable item
(dhtd-bench seed). Then, REPS times, interleaved, for each shape

  closed-1   closed loop, 1 socket (fixed querier id), 64 outstanding
  closed-16  closed loop, 16 sockets on 4 source addresses, 4 outstanding each
  open-1     open loop, 1 socket, --open-rate queries/s
  open-16    open loop, 16 sockets on 4 source addresses, --open-rate in total

In the closed loops each load socket has one goroutine that reads the
answers that have arrived with one recvmmsg and sends as many new
queries with one sendmmsg, so the servers, not the tool, set the pace.

it measures the two echo servers (ping), then dhtd and libtorrent on ping,
find_node, get_peers of the infohash with 50 peers and of one with none,
get of the stored item and of a missing one. Socket i of every run has
the same address (a fixed port) and node id (--port-base, --id-seed): the
nodes see the same 16 queriers throughout, and never a growing crowd of
closed sockets from earlier runs.

Reported per query and shape: answers per server CPU-second (the CPU
time of the server's threads over the measured window, from
/proc/PID/task/*/schedstat), medians of REPS, and
the ratios dhtd/libtorrent, dhtd/bare echo and dhtd/batched echo; loss and p99 latency. A ratio
that moves by more than 2x between shapes is marked.

Before that, the idle RSS of a separate `dhtd run` in its default
configuration (storage on disk, default limits, both address families)
with a table of --idle-fill responders (the size of libtorrent's extended
table of 32 full buckets) is reported with its file-backed/anonymous split
(/proc/PID/status). With --idle-only that is all, and --peers N then
reports the RSS of a dhtd holding N peers.

With --profile PREFIX, it profiles dhtd under load instead of running
the table: `dhtd-bench serve --pprof` (package node, the code `dhtd run`
runs, with the same limits lifted) pinned and offered the same fillers
and seeded data, loaded in the closed-1 shape for each of --queries while
its CPU profile is taken; PREFIX-QUERY.pprof is written and
`go tool pprof -top` of it printed.

    /usr/bin/python3 testdata/bench/run.py [--reps 3] [--duration 5s] [--quick] [--no-lt] [--peers N]
    /usr/bin/python3 testdata/bench/run.py --idle-only [--idle-storage memory] [--peers 1000000]
    /usr/bin/python3 testdata/bench/run.py --profile /tmp/dhtd --queries find_node --duration 10s
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BENCH = os.path.join(ROOT, "bin", "dhtd-bench")
DHTD = os.path.join(ROOT, "bin", "dhtd")
LTSERVE = os.path.join(ROOT, "testdata", "bench", "ltserve.py")

QUERIES = [
    # label, method, key ("ih", "item" or None: a random one), expect stored
    ("ping", "ping", None, False),
    ("find_node", "find_node", None, False),
    ("get_peers 50", "get_peers", "ih", True),
    ("get_peers none", "get_peers", None, False),
    ("get 1000 B", "get", "item", True),
    ("get missing", "get", None, False),
]


def free_port(kind=socket.SOCK_DGRAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def port_block(n):
    """A base port p such that p..p+n-1 are free for UDP on 127.0.0.1-4."""
    for _ in range(200):
        base = free_port()
        if base + n > 65535:
            continue
        socks = []
        try:
            for i in range(n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.%d" % (1 + i % 4), base + i))
            return base
        except OSError:
            pass
        finally:
            for s in socks:
                s.close()
    sys.exit("no block of %d free ports" % n)


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[k] = int(v.split()[0])
    return out


def pinned(cpu, cmd):
    if cpu is None:
        return cmd
    return ["taskset", "-c", str(cpu)] + cmd


class Bench:
    def __init__(self, args):
        self.args = args

    def tool(self, *a):
        cmd = pinned(self.args.load_cpu, [BENCH] + list(a))
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout

    def load(self, target, pid, query, shape, key=None, expect=False, echo=False):
        a = self.args
        cmd = ["load", "--target", target, "--query", query, "--pid", str(pid), "--json",
               "--duration", a.duration, "--warmup", a.warmup, "--timeout", "1s"]
        kind, n = shape.split("-")
        if n == "1":
            cmd += ["--sockets", "1", "--sources", "1"]
        else:
            cmd += ["--sockets", n, "--sources", "4"]
        if kind == "closed":
            cmd += ["--window", str(a.window // int(n))]
        else:
            cmd += ["--rate", str(a.open_rate)]
        if key:
            cmd += ["--key", key]
        if expect:
            cmd += ["--expect-stored"]
        if echo:
            cmd += ["--echo"]
        # The same queriers (address and id) in every run.
        cmd += ["--port-base", str(a.port_base), "--id-seed", "1"]
        return json.loads(self.tool(*cmd))


def start_dhtd(cpu, extra=(), binary=None):
    """dhtd run as deployed (metrics HTTP on, as by default), in memory,
    with its limits lifted."""
    port, mport = free_port(), free_port(socket.SOCK_STREAM)
    p = subprocess.Popen(pinned(cpu, [binary or DHTD, "run", "--no-bootstrap", "--listen", "127.0.0.1:%d" % port,
                                      "--storage", "memory", "--metrics-listen", "127.0.0.1:%d" % mport,
                                      "--reply-budget", "0", "--rate-limit", "0", "--log-level", "warn"]
                                + list(extra)),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    admin = "http://127.0.0.1:%d" % mport
    end = time.monotonic() + 10
    while time.monotonic() < end:
        if p.poll() is not None:
            sys.exit("dhtd exited at start")
        try:
            table_size(admin)
            break
        except OSError:
            time.sleep(0.1)
    return p, "127.0.0.1:%d" % port, admin


def table_size(admin):
    with urllib.request.urlopen(admin + "/debug/routing", timeout=5) as r:
        d = json.load(r)
    return d["good"] + d["questionable"], len(d["buckets"])


def start_lt(cpu, nodes):
    try:
        subprocess.run(["/usr/bin/python3", "-c", "import libtorrent"], check=True, capture_output=True)
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None, None, 0
    port = free_port()
    p = subprocess.Popen(pinned(cpu, ["/usr/bin/python3", LTSERVE, "--listen", "127.0.0.1:%d" % port,
                                      "--nodes", nodes]),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline().split()
    if len(line) < 8:
        p.kill()
        return None, None, 0
    return p, line[1], int(line[7])


def start_line(cmd, stdin=subprocess.DEVNULL):
    p = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return p, p.stdout.readline().split()


def stop(p):
    if p is None:
        return
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()


def med(rows, key):
    vals = [r.get(key, 0) for r in rows]
    return statistics.median(vals) if vals else 0


def has_ipv6():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def start_default_dhtd(args, data_dir, extra=()):
    """dhtd run in its default configuration, as `dhtd run` with no flags
    starts it: storage on disk (--idle-storage), the default limits, the
    metrics listener, one node per address family where the host has IPv6.
    Only the addresses (loopback), --no-bootstrap, --data-dir (a temporary
    directory) and the log level differ. Started when /healthz answers:
    nothing else is asked of it before the measurement."""
    port, mport = free_port(), free_port(socket.SOCK_STREAM)
    cmd = [args.dhtd_bin, "run", "--no-bootstrap", "--listen", "127.0.0.1:%d" % port,
           "--metrics-listen", "127.0.0.1:%d" % mport, "--log-level", "warn",
           "--storage", args.idle_storage, "--data-dir", data_dir]
    if has_ipv6():
        cmd += ["--listen", "[::1]:%d" % port]
    p = subprocess.Popen(pinned(args.server_cpu, cmd + list(extra) + args.dhtd_arg),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    admin = "http://127.0.0.1:%d" % mport
    end = time.monotonic() + 10
    while True:
        if p.poll() is not None:
            sys.exit("dhtd exited at start")
        try:
            urllib.request.urlopen(admin + "/healthz", timeout=5).read()
            break
        except OSError:
            if time.monotonic() > end:
                stop(p)
                sys.exit("dhtd did not answer /healthz within 10 s")
            time.sleep(0.1)
    return p, "127.0.0.1:%d" % port, admin


def rss_line(st):
    return "VmRSS %.1f MiB = RssFile %.1f + RssAnon %.1f MiB" % (
        st["VmRSS"] / 1024, st["RssFile"] / 1024, st["RssAnon"] / 1024)


def idle_memory(args):
    """Idle RSS of dhtd run in its default configuration with a full
    table, file-backed and anonymous."""
    with tempfile.TemporaryDirectory(prefix="dhtd-idle-") as data_dir:
        dp, dt, admin = start_default_dhtd(args, data_dir)
        try:
            out = subprocess.run(pinned(args.load_cpu, [BENCH, "load", "--target", dt, "--fill", str(args.idle_fill),
                                                        "--query", "ping", "--duration", "10ms", "--warmup", "0s",
                                                        "--json"]),
                                 check=True, capture_output=True, text=True).stdout
            carried = json.loads(out).get("target_table_sample", 0)
            # Settle, then one metrics scrape, as a deployed node sees.
            time.sleep(args.idle_wait)
            urllib.request.urlopen(admin + "/metrics", timeout=5).read()
            time.sleep(1)
            st = proc_status(dp.pid)
            nodes, buckets = table_size(admin)
            print("idle dhtd run (default configuration, --storage %s; full table: %d nodes in %d buckets, "
                  "find_node carries %d): %s" % (args.idle_storage, nodes, buckets, carried, rss_line(st)))
        finally:
            stop(dp)


def peers_memory(args):
    """RSS of dhtd run holding --peers peers: the idle configuration with
    --storage memory and the reply budget lifted (--reply-budget 0), so
    that one machine can announce that many in a minute or two."""
    ips = 500
    ihs = (args.peers + ips - 1) // ips
    with tempfile.TemporaryDirectory(prefix="dhtd-peers-") as data_dir:
        a = argparse.Namespace(**vars(args))
        a.idle_storage = "memory"
        dp, dt, admin = start_default_dhtd(a, data_dir, extra=["--reply-budget", "0"])
        try:
            out = subprocess.run(pinned(args.load_cpu, [BENCH, "announce", "--target", dt, "--ips", str(ips),
                                                        "--infohashes", str(ihs)]),
                                 check=True, capture_output=True, text=True).stdout
            time.sleep(args.idle_wait)
            urllib.request.urlopen(admin + "/metrics", timeout=5).read()
            time.sleep(1)
            print(out.strip())
            print("dhtd run --storage memory holding %d peers: %s" % (args.peers, rss_line(proc_status(dp.pid))))
        finally:
            stop(dp)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", default="5s")
    ap.add_argument("--warmup", default="1s")
    ap.add_argument("--window", type=int, default=64, help="closed loop: queries outstanding in total")
    ap.add_argument("--open-rate", type=int, default=10000, help="open loop: queries per second in total")
    ap.add_argument("--fillers", type=int, default=16, help="live filler nodes in both tables")
    ap.add_argument("--idle-fill", type=int, default=464,
                    help="responders offered to the idle dhtd's table (464: libtorrent's extended table of 32 full buckets)")
    ap.add_argument("--idle-wait", type=float, default=5, help="seconds the idle dhtd settles before its RSS is read")
    ap.add_argument("--idle-storage", default="disk", choices=["disk", "memory"],
                    help="--storage of the idle dhtd (disk: the default of dhtd run)")
    ap.add_argument("--shapes", default="closed-1,closed-16,open-1,open-16")
    ap.add_argument("--queries", default="", help="comma-separated labels of QUERIES to run (default: all)")
    ap.add_argument("--server-cpu", default="0", help="core the servers are pinned to ('' : no pinning)")
    ap.add_argument("--load-cpu", default="1", help="core the load tool and fillers are pinned to ('' : none)")
    ap.add_argument("--peers", type=int, default=0,
                    help="also store this many peers on dhtd and report its RSS (with --idle-only: on a separate "
                         "dhtd run --storage memory --reply-budget 0)")
    ap.add_argument("--no-lt", action="store_true", help="skip libtorrent")
    ap.add_argument("--dhtd-arg", action="append", default=[], help="extra flag for dhtd run (repeatable)")
    ap.add_argument("--dhtd-bin", default=DHTD, help="the dhtd binary to measure (default: bin/dhtd)")
    ap.add_argument("--base-bin", default="", help="a second dhtd binary measured in the same run (e.g. the build "
                    "before a change); adds the columns base and dhtd/base")
    ap.add_argument("--base-core", action="store_true", help="as base, measure the node core driven from a socket "
                    "(bin/dhtd-bench core: node.CoreNode, what the simulator runs) instead of a second dhtd binary: "
                    "dhtd/base is then dhtd run over the core")
    ap.add_argument("--idle-only", action="store_true", help="only the idle RSS")
    ap.add_argument("--profile", default="", help="PREFIX: write PREFIX-QUERY.pprof, CPU profiles of dhtd under "
                    "closed-1 load, instead of the table")
    ap.add_argument("--profile-shape", default="closed-1", help="the shape of the profiled load")
    ap.add_argument("--quick", action="store_true", help="a sanity run: 1 rep of 500ms, low open-loop rate")
    args = ap.parse_args()
    if args.quick:
        args.reps, args.duration, args.warmup, args.open_rate, args.idle_wait = 1, "500ms", "200ms", 2000, 2
    args.server_cpu = args.server_cpu if args.server_cpu != "" and os.cpu_count() > 1 else None
    args.load_cpu = args.load_cpu if args.load_cpu != "" and os.cpu_count() > 1 else None
    queries = [q for q in QUERIES if not args.queries or q[0] in args.queries.split(",")]
    shapes = args.shapes.split(",")
    # 16 consecutive free ports for the load sockets, reused by every run.
    args.port_base = port_block(16)
    b = Bench(args)

    if args.profile:
        profile(args, b, queries)
        return
    idle_memory(args)
    if args.idle_only:
        if args.peers > 0:
            peers_memory(args)
        return

    fp = ep = bp = dp = lp = basep = None
    try:
        fp, fl = start_line(pinned(args.load_cpu, [BENCH, "filler", "--count", str(args.fillers)]),
                            stdin=subprocess.PIPE)
        fillers = fl[1]

        def offer(addr):
            fp.stdin.write("offer %s\n" % addr)
            fp.stdin.flush()
            fp.stdout.readline()

        ep, el = start_line(pinned(args.server_cpu, [BENCH, "echo", "--listen", "127.0.0.1:0"]))
        echo_target, echo_pid = el[1], int(el[3])
        bp, bl = start_line(pinned(args.server_cpu, [BENCH, "echo", "--bare", "--listen", "127.0.0.1:0"]))
        bare_target, bare_pid = bl[1], int(bl[3])
        dp, dt, admin = start_dhtd(args.server_cpu, args.dhtd_arg, args.dhtd_bin)
        offer(dt)
        end = time.monotonic() + 10
        while table_size(admin)[0] < args.fillers and time.monotonic() < end:
            time.sleep(0.1)
        dnodes = table_size(admin)[0]
        seeds = {"dhtd": json.loads(b.tool("seed", "--target", dt))}
        targets = {"dhtd": (dt, dp.pid)}
        if args.base_bin:
            # A second dhtd (e.g. the build before a change), measured in
            # the same run: dhtd/base compares two builds under the same
            # conditions, which figures from two runs on a shared machine
            # do not.
            basep, bt, badmin = start_dhtd(args.server_cpu, args.dhtd_arg, args.base_bin)
            offer(bt)
            end = time.monotonic() + 10
            while table_size(badmin)[0] < args.fillers and time.monotonic() < end:
                time.sleep(0.1)
            seeds["base"] = json.loads(b.tool("seed", "--target", bt))
            targets["base"] = (bt, basep.pid)
        elif args.base_core:
            # The node core on a socket (node.CoreNode) under the same
            # table and load: what dhtd run's per-packet cost becomes once
            # it runs on the core.
            basep, bl = start_line(pinned(args.server_cpu, [BENCH, "core", "--listen", "127.0.0.1:0"]),
                                   stdin=subprocess.PIPE)
            bt = bl[1]
            offer(bt)

            def core_table():
                basep.stdin.write("table\n")
                basep.stdin.flush()
                return int(basep.stdout.readline().split()[1])
            end = time.monotonic() + 10
            while core_table() < args.fillers and time.monotonic() < end:
                time.sleep(0.1)
            seeds["base"] = json.loads(b.tool("seed", "--target", bt))
            targets["base"] = (bt, basep.pid)
        if not args.no_lt:
            lp, lt_target, lt_live = start_lt(args.server_cpu, fillers)
        if lp:
            offer(lt_target)
            seeds["lt"] = json.loads(b.tool("seed", "--target", lt_target))
            targets["lt"] = (lt_target, lp.pid)
        print("fillers: %d live nodes on %s; dhtd %s pid %d: %d in its table%s"
              % (args.fillers, fillers.split(",")[0] + "..", dt, dp.pid, dnodes,
                 "; libtorrent %s pid %d: %d live in its table" % (lt_target, lp.pid, lt_live) if lp
                 else "; libtorrent: not measured (python3-libtorrent missing or --no-lt)"))
        if args.base_core:
            print("base: the node core on a socket (dhtd-bench core, node.CoreNode) %s pid %d: %d in its table"
                  % (bt, basep.pid, core_table()))
        for name, s in seeds.items():
            print("seeded %s: %d peers on %s (get_peers returns %d), item %s (%d bytes)"
                  % (name, s["peers"], s["infohash"][:8], s["values"], s["item"][:8], s["item_bytes"]))
        print("servers on cpu %s, load on cpu %s; %s measured after %s warm-up; closed loop %d outstanding, "
              "open loop %d queries/s; medians of %d"
              % (args.server_cpu, args.load_cpu, args.duration, args.warmup, args.window, args.open_rate, args.reps))
        sys.stdout.flush()

        rows = {}
        for rep in range(args.reps):
            for shape in shapes:
                rows.setdefault(("bare", "ping", shape), []).append(
                    b.load(bare_target, bare_pid, "ping", shape, echo=True))
                rows.setdefault(("echo", "ping", shape), []).append(
                    b.load(echo_target, echo_pid, "ping", shape, echo=True))
                for label, method, key, expect in queries:
                    for name, (t, pid) in targets.items():
                        k = seeds[name][{"ih": "infohash", "item": "item"}[key]] if key else None
                        rows.setdefault((name, label, shape), []).append(
                            b.load(t, pid, method, shape, key=k, expect=expect))
        report(rows, shapes, queries, "lt" in targets, "base" in targets)
        if args.peers > 0:
            ips = 500
            ihs = (args.peers + ips - 1) // ips
            out = b.tool("announce", "--target", dt, "--pid", str(dp.pid), "--ips", str(ips),
                         "--infohashes", str(ihs))
            print()
            print(out.strip())
    finally:
        for p in (lp, dp, basep, ep, bp, fp):
            stop(p)


def profile(args, b, queries):
    """CPU profiles of dhtd (dhtd-bench serve --pprof) under load."""
    fp = sp = None
    try:
        fp, fl = start_line(pinned(args.load_cpu, [BENCH, "filler", "--count", str(args.fillers)]),
                            stdin=subprocess.PIPE)
        port, pport = free_port(), free_port(socket.SOCK_STREAM)
        sp, sl = start_line(pinned(args.server_cpu, [BENCH, "serve", "--listen", "127.0.0.1:%d" % port,
                                                     "--reply-bytes-per-second", "-1", "--rate-limit", "-1",
                                                     "--pprof", "127.0.0.1:%d" % pport]))
        target, pid = sl[1], int(sl[3])
        fp.stdin.write("offer %s\n" % target)
        fp.stdin.flush()
        fp.stdout.readline()
        seed = json.loads(b.tool("seed", "--target", target))
        secs = max(1, int(float(args.duration.rstrip("s"))))
        for label, method, key, expect in queries:
            k = seed[{"ih": "infohash", "item": "item"}[key]] if key else None
            out = "%s-%s.pprof" % (args.profile, label.replace(" ", "_"))
            cmd = ["load", "--target", target, "--query", method, "--pid", str(pid), "--json",
                   "--duration", "%ds" % (secs + 2), "--warmup", "0s", "--timeout", "1s",
                   "--port-base", str(args.port_base), "--id-seed", "1"]
            kind, n = args.profile_shape.split("-")
            cmd += ["--sockets", n, "--sources", "1" if n == "1" else "4"]
            cmd += ["--window", str(args.window // int(n))] if kind == "closed" else ["--rate", str(args.open_rate)]
            if k:
                cmd += ["--key", k]
            if expect:
                cmd += ["--expect-stored"]
            lp = subprocess.Popen(pinned(args.load_cpu, [BENCH] + cmd), stdout=subprocess.PIPE, text=True)
            time.sleep(1)
            with urllib.request.urlopen("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d" % (pport, secs),
                                        timeout=secs + 30) as r, open(out, "wb") as f:
                f.write(r.read())
            res = json.loads(lp.communicate()[0])
            print("%s %s: %.0f answers per CPU-second, loss %.3f%%; %s" % (
                args.profile_shape, label, res.get("answers_per_cpu_s", 0), res.get("loss_pct", 0), out))
            print(subprocess.run(["go", "tool", "pprof", "-top", "-nodecount=30", out],
                                 capture_output=True, text=True).stdout)
            sys.stdout.flush()
    finally:
        for p in (sp, fp):
            stop(p)


def report(rows, shapes, queries, have_lt, have_base=False):
    print()
    hdr = "%-9s %-15s %10s %10s %10s %10s %8s %8s %8s %7s %7s %8s %8s %6s %9s" % (
        "shape", "query", "dhtd a/CPUs", "lt a/CPUs", "bare a/CPUs", "mmsg a/CPUs", "dhtd/lt", "d/bare", "d/mmsg",
        "loss% d", "loss% lt", "p99µs d", "p99µs lt", "nodes", "busy d/lt")
    if have_base:
        hdr += " %10s %8s %7s" % ("base a/CPUs", "d/base", "loss% b")
    print(hdr)
    print("-" * len(hdr))
    ratios = {}
    for shape in shapes:
        bare = med(rows[("bare", "ping", shape)], "answers_per_cpu_s")
        echo = med(rows[("echo", "ping", shape)], "answers_per_cpu_s")
        for label, _, _, _ in queries:
            d = rows[("dhtd", label, shape)]
            lt = rows.get(("lt", label, shape), [])
            dv, lv = med(d, "answers_per_cpu_s"), med(lt, "answers_per_cpu_s")
            rl = dv / lv if lv else float("nan")
            rb = dv / bare if bare else float("nan")
            re = dv / echo if echo else float("nan")
            ratios.setdefault(label, []).append((shape, rl))
            line = "%-9s %-15s %10.0f %10.0f %10.0f %10.0f %7.2fx %7.2fx %7.2fx %7.3f %7.3f %8.0f %8.0f %3d/%-2d %4.0f/%-4.0f" % (
                shape, label, dv, lv, bare, echo, rl, rb, re, med(d, "loss_pct"), med(lt, "loss_pct"),
                med(d, "p99_us"), med(lt, "p99_us"), med(d, "max_nodes"), med(lt, "max_nodes"),
                100 * med(d, "server_cpu_util"), 100 * med(lt, "server_cpu_util"))
            if have_base:
                base = rows.get(("base", label, shape), [])
                bv = med(base, "answers_per_cpu_s")
                line += " %10.0f %7.2fx %7.3f" % (bv, dv / bv if bv else float("nan"), med(base, "loss_pct"))
            print(line)
    print("(a/CPUs: answers per server CPU-second, medians; bare: the bare echo server (one read and one write "
          "per datagram), mmsg: the batched echo server (recvmmsg/sendmmsg, dhtd's own socket I/O), both on ping "
          "in the same shape; nodes: most nodes in one answer, dhtd/libtorrent; busy: % of its core each server "
          "used, so a run the load tool could not drive hard shows)")
    if have_lt:
        for label, rs in ratios.items():
            vals = [r for _, r in rs if r == r and r > 0]
            if vals and max(vals) / min(vals) > 2:
                print("! %s: dhtd/libtorrent moves by more than 2x between shapes: %s" % (
                    label, ", ".join("%s %.2fx" % (s, r) for s, r in rs)))
    # The spread of the medians: one line per node and shape.
    print()
    for (name, label, shape), rs in sorted(rows.items()):
        if len(rs) > 1 and label in ("ping", "find_node"):
            vals = [r.get("answers_per_cpu_s", 0) for r in rs]
            print("runs %-5s %-10s %-9s %s" % (name, label, shape, " ".join("%.0f" % v for v in vals)))


if __name__ == "__main__":
    main()
