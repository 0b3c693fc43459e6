#!/usr/bin/python3
"""ltserve.py: a libtorrent (python3-libtorrent 2.0.8) DHT node to measure
with dhtd-bench, next to dhtd, in the same run with the same load tool.

    /usr/bin/python3 testdata/bench/ltserve.py --listen 127.0.0.1:PORT [--nodes IP:PORT,...] [--fill N]

libtorrent's DHT limits are raised so that they do not cap the measurement:
dht_upload_rate_limit (default 8000 bytes/s) and dht_block_ratelimit
(default 5 packets/s per IP) to values no load tool reaches. With --fill N,
N responders (Python sockets on 127.0.3.x, ids spread over the buckets near
the node's own id, 8 per bucket) are added with add_dht_node and answer
libtorrent's confirming query, so find_node answers carry 8 nodes as
dhtd's do; they are then closed, before the measurement starts (a table of
dead nodes: libtorrent then keeps pinging them, so a throughput figure
taken this way handicaps it). With --nodes, the nodes given (e.g. the live
`dhtd-bench filler` nodes that dhtd is given too) are added instead, and
stay up: the fair setting. Upload rate limits are lifted too
(upload_rate_limit 0: unlimited).

stdout: one line once ready, "listening IP:PORT pid PID id HEX live N".
Alerts are then switched off (no Python work during the load); the process
runs until stdin reaches EOF or it is sent SIGTERM/SIGINT.
"""

import argparse
import os
import signal
import socket
import sys
import threading
import time
import warnings

warnings.simplefilter("ignore")

import libtorrent as lt  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
from ltnode import AlertWaiter, loopback_dht_settings  # noqa: E402


def log(*a):
    print("ltserve:", *a, file=sys.stderr, flush=True)


def bstr(b):
    return str(len(b)).encode() + b":" + b


def tid_of(pkt):
    """Transaction id of a KRPC message (its "1:t" key), or None."""
    i = pkt.find(b"1:t")
    if i < 0:
        return None
    i += 3
    j = pkt.find(b":", i)
    if j < 0 or not pkt[i:j].isdigit():
        return None
    n = int(pkt[i:j])
    return pkt[j + 1:j + 1 + n]


def responder(sock, nid, stop):
    """Answers every query with our id, a token and no nodes."""
    sock.settimeout(0.05)
    while not stop.is_set():
        try:
            pkt, addr = sock.recvfrom(4096)
        except socket.timeout:
            continue
        except OSError:
            return
        if b"1:y1:q" not in pkt:
            continue
        t = tid_of(pkt)
        if t is None:
            continue
        r = b"d1:rd2:id" + bstr(nid) + b"5:token5:bench" + b"e1:t" + bstr(t) + b"1:y1:re"
        try:
            sock.sendto(r, addr)
        except OSError:
            pass


def node_id(s, host):
    st = s.save_state(lt.save_state_flags_t.save_dht_state)
    ids = (st.get(b"dht state") or {}).get(b"node-id")
    if isinstance(ids, bytes):
        ids = [ids]
    if not ids:
        return None
    ip = bytes(int(x) for x in host.split("."))
    for e in ids:
        if e[20:] == ip:
            return e[:20]
    return ids[0][:20]


def live_count(s, alerts, timeout=2.0):
    s.post_dht_stats()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        alerts.wait(0.1)
        for a in s.pop_alerts():
            if isinstance(a, lt.dht_stats_alert):
                return sum(b["num_nodes"] for b in a.routing_table)
    return -1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True, help="IP:PORT on loopback")
    ap.add_argument("--fill", type=int, default=0, help="responders to put in the routing table (closed after)")
    ap.add_argument("--nodes", default="", help="comma-separated IP:PORT of live nodes to add to the table")
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    if not host.startswith("127."):
        log("loopback only")
        sys.exit(1)
    C = lt.alert.category_t
    s = lt.session({
        **loopback_dht_settings(args.listen),
        # the limits a throughput measurement must not hit
        "dht_upload_rate_limit": 1_000_000_000,  # bytes/s (default 8000)
        "dht_block_ratelimit": 1_000_000,        # packets/s per IP (default 5)
        "dht_block_timeout": 1,
        "upload_rate_limit": 0,                  # unlimited
        # the socket buffers dhtd asks for (2 MiB), so a short stall of
        # the process on a busy machine drops no more here than there
        "recv_socket_buffer_size": 2 << 20,
        "send_socket_buffer_size": 2 << 20,
        "download_rate_limit": 0,
        "alert_mask": C.error_notification | C.status_notification | C.dht_notification,
    })
    alerts = AlertWaiter(s)
    nid = None
    end = time.monotonic() + 5
    while time.monotonic() < end and (nid is None or s.listen_port() == 0):
        time.sleep(0.05)
        s.pop_alerts()
        if s.is_dht_running():
            nid = node_id(s, host)
    if nid is None:
        log("no DHT node id")
        sys.exit(1)
    live = 0
    if args.fill > 0:
        stop = threading.Event()
        socks, threads = [], []
        rnd = os.urandom
        base = int.from_bytes(nid, "big")
        for i in range(args.fill):
            bit = min(i // 8, 159)
            v = base ^ (1 << (159 - bit))
            low = int.from_bytes(rnd(20), "big") & ((1 << (159 - bit)) - 1)
            v = (v & ~((1 << (159 - bit)) - 1)) | low
            fid = v.to_bytes(20, "big")
            so = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            so.bind(("127.0.3.%d" % (1 + i % 250), 0))
            th = threading.Thread(target=responder, args=(so, fid, stop), daemon=True)
            th.start()
            socks.append(so)
            threads.append(th)
            s.add_dht_node(so.getsockname())
        best, stable = 0, 0
        end = time.monotonic() + 10
        while time.monotonic() < end and stable < 5:
            time.sleep(0.2)
            n = live_count(s, alerts)
            if n > best:
                best, stable = n, 0
            else:
                stable += 1
        live = best
        stop.set()
        for th in threads:
            th.join()
        for so in socks:
            so.close()
    if args.nodes:
        for a in args.nodes.split(","):
            h, p = a.rsplit(":", 1)
            s.add_dht_node((h, int(p)))
        want = len(args.nodes.split(","))
        best, stable = 0, 0
        end = time.monotonic() + 15
        while time.monotonic() < end and stable < 5 and best < want:
            time.sleep(0.2)
            n = live_count(s, alerts)
            if n > best:
                best, stable = n, 0
            else:
                stable += 1
        live = best
    s.apply_settings({"alert_mask": 0})
    s.pop_alerts()
    print("listening %s:%d pid %d id %s live %d" % (host, s.listen_port(), os.getpid(), nid.hex(), live), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    while not done.is_set():
        done.wait(0.5)
    del s


if __name__ == "__main__":
    main()
