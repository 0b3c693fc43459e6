#!/usr/bin/python3
"""ltnode.py: a libtorrent (python3-libtorrent 2.0.8) DHT node driven over
stdin/stdout with JSON lines, for dhtd's interop tests.

Run with the system interpreter:  /usr/bin/python3 ltnode.py --listen 127.0.0.2:PORT
(PORT may be 0: the port libtorrent picked is in the "ready" line).

stdout carries only JSON lines: first {"event":"ready",...} (or
{"event":"error",...} and exit status 1), then exactly one reply per command,
in command order, each carrying the command's "id" if it had one. Diagnostics
go to stderr (more with --verbose). See NOTES.md for the protocol.
"""

import argparse
import ipaddress
import hashlib
import json
import queue
import re
import select
import shutil
import socket
import sys
import tempfile
import threading
import time
import warnings

warnings.simplefilter("ignore")  # dht_state()/save_state() deprecation noise

import libtorrent as lt  # noqa: E402

VERBOSE = False


def log(*a):
    print("ltnode:", *a, file=sys.stderr, flush=True)


def vlog(*a):
    if VERBOSE:
        log(*a)


def emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


class CmdError(Exception):
    pass


# ---------------------------------------------------------------- ed25519
# Only the public key is computed here (libtorrent signs); pure Python so the
# harness needs nothing beyond python3-libtorrent.
_P = 2 ** 255 - 19
_L = 2 ** 252 + 27742317777372353535851937790883648493
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_I = pow(2, (_P - 1) // 4, _P)


def _xrecover(y):
    xx = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P)
    x = pow(xx, (_P + 3) // 8, _P)
    if (x * x - xx) % _P != 0:
        x = (x * _I) % _P
    if x % 2 != 0:
        x = _P - x
    return x


_BY = (4 * pow(5, _P - 2, _P)) % _P
_BX = _xrecover(_BY)
_B = (_BX, _BY, 1, (_BX * _BY) % _P)  # extended coordinates


def _add(p, q):
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = t1 * 2 * _D * t2 % _P
    dd = z1 * 2 * z2 % _P
    e, f, g, h = b - a, dd - c, dd + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s, p):
    q = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def _encode(p):
    x, y, z, _ = p
    zi = pow(z, _P - 2, _P)
    x, y = x * zi % _P, y * zi % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def ed25519_from_seed(seed):
    """32-byte seed -> (64-byte expanded secret key as libtorrent wants it,
    32-byte public key). Same key pair as Go's ed25519.NewKeyFromSeed(seed)."""
    if len(seed) != 32:
        raise CmdError("seed must be 32 bytes (64 hex digits)")
    h = bytearray(hashlib.sha512(seed).digest())
    h[0] &= 248
    h[31] &= 127
    h[31] |= 64
    a = int.from_bytes(bytes(h[:32]), "little")
    return bytes(h), _encode(_mul(a, _B))


# ---------------------------------------------------------------- helpers
def hex20(s, what):
    try:
        b = bytes.fromhex(s)
    except (TypeError, ValueError):
        raise CmdError("%s: not hex" % what)
    if len(b) != 20:
        raise CmdError("%s: want 20 bytes (40 hex digits)" % what)
    return b


def ep_str(ep):
    host, port = ep[0], ep[1]
    return ("[%s]:%d" % (host, port)) if ":" in host else ("%s:%d" % (host, port))


def amsg(a):
    """a.message(), which raises for non-UTF-8 content (e.g. binary salt)."""
    try:
        return a.message()
    except Exception as e:
        return "<%s: message() failed: %s>" % (type(a).__name__, e)


def to_json(v):
    """bdecoded python value -> JSON-able (bytes as utf-8 str when possible)."""
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            return {"hex": v.hex()}
    if isinstance(v, dict):
        return {(k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)): to_json(x)
                for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_json(x) for x in v]
    return v


def value_of(cmd, key="value"):
    """A command's value to store: "value" (a string, stored as a bencoded
    string of its UTF-8 bytes) or "value_hex" (raw bytes of that string)."""
    if "value_hex" in cmd:
        try:
            return bytes.fromhex(cmd["value_hex"])
        except (TypeError, ValueError):
            raise CmdError("value_hex: not hex")
    if key not in cmd or not isinstance(cmd[key], str):
        raise CmdError("%s: string required" % key)
    return cmd[key].encode("utf-8")


def string_reply(b):
    """Fields describing a byte string value."""
    r = {"value_hex": b.hex()}
    try:
        r["value"] = b.decode("utf-8")
    except UnicodeDecodeError:
        r["value"] = None
    return r


PKT_RE = re.compile(r"^(==>|<==) \[(.*?)\] ")


def loopback_dht_settings(listen):
    """libtorrent session settings for a DHT-only node on loopback: no
    bootstrap routers, no local discovery or port mapping, no address
    restrictions (every test node is on 127.0.0.x). testdata/bench/ltserve.py
    uses them too."""
    return {
        "listen_interfaces": listen,
        "enable_dht": True,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        # bind exactly the port asked for: by default a busy port makes
        # libtorrent silently try port+1 .. port+10, then any port
        "max_retry_port_bind": 0,
        "listen_system_port_fallback": False,
        "dht_bootstrap_nodes": "",
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_ignore_dark_internet": False,
        "dht_prefer_verified_node_ids": False,
    }


class AlertWaiter:
    """Waits for libtorrent's alerts on a socket it writes a byte to
    (session.set_alert_fd), in place of session.wait_for_alert. That call
    returns the first pending alert, which the bindings convert to a Python
    object while libtorrent's thread may be growing the alert queue under
    it: with the DHT's packet alerts on, python3-libtorrent 2.0.8 crashed
    there (SIGSEGV) about once in twenty interop runs."""

    def __init__(self, session):
        self.r, self.w = socket.socketpair()
        self.r.setblocking(False)
        self.w.setblocking(False)  # a full socket must not stall libtorrent
        session.set_alert_fd(self.w.fileno())

    def wait(self, timeout):
        """Returns once libtorrent posted an alert, or after timeout (s)."""
        select.select([self.r], [], [], max(timeout, 0))
        try:
            while self.r.recv(4096):
                pass
        except BlockingIOError:
            pass


# ---------------------------------------------------------------- the node
class Node:
    def __init__(self, listen, verbose):
        self.listen = listen
        self.tmpdir = tempfile.mkdtemp(prefix="ltnode-")
        C = lt.alert.category_t
        mask = (C.error_notification | C.status_notification | C.dht_notification
                | C.dht_operation_notification | C.dht_log_notification)
        self.settings = {
            **loopback_dht_settings(listen),
            "dht_upload_rate_limit": 10_000_000,
            "dht_block_ratelimit": 100_000,
            "alert_mask": mask,
            "alert_queue_size": 100_000,
        }
        self.s = lt.session(self.settings)
        self.alerts = AlertWaiter(self.s)
        self.port = None
        self.node_id = None
        self.torrents = {}  # info-hash hex -> handle
        # Observed traffic, returned (and cleared) by the "events" command.
        self.ev_announces = []  # announce_peer received (dht_announce_alert)
        self.ev_queries = []    # incoming queries
        self.ev_limit = 10_000
        # Per-command packet watcher: fn(direction, addr, msg) or None.
        self.pkt_watch = None
        self.verbose = verbose

    # -- alerts
    def pump(self, deadline, handler=None, done=None):
        """Read alerts until handler(alert) returns True or done() returns
        True (checked after every wait; -> True), or the deadline passes
        (-> False). Every alert also goes through observe()."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.alerts.wait(min(left, 0.1))
            fin = False
            for a in self.s.pop_alerts():  # valid only until the next pop
                self.observe(a)
                if handler is not None and not fin and handler(a):
                    fin = True
            a = None  # no alert outlives its pop
            if fin or (done is not None and done()):
                return True

    def observe(self, a):
        if isinstance(a, lt.dht_pkt_alert):
            msg = amsg(a)
            m = PKT_RE.match(msg)
            if not m:
                return
            direction = "out" if m.group(1) == "==>" else "in"
            addr = m.group(2)
            try:
                pkt = lt.bdecode(a.pkt_buf)
            except Exception:
                pkt = None
            if not isinstance(pkt, dict):
                return
            if VERBOSE:
                vlog("pkt", direction, addr, repr(pkt)[:400])
            if direction == "in" and pkt.get(b"y") == b"q" and len(self.ev_queries) < self.ev_limit:
                self.ev_queries.append({"from": addr, "q": to_json(pkt.get(b"q", b""))})
            if self.pkt_watch is not None:
                self.pkt_watch(direction, addr, pkt)
            return
        if isinstance(a, lt.dht_log_alert):
            return
        if isinstance(a, lt.dht_announce_alert):
            if len(self.ev_announces) < self.ev_limit:
                self.ev_announces.append({"info_hash": str(a.info_hash), "ip": str(a.ip),
                                          "port": int(a.port)})
        if VERBOSE:
            vlog("alert", type(a).__name__, amsg(a)[:300])

    # -- start
    def start(self, timeout=10.0):
        want_host = self.listen.rsplit(":", 1)[0].strip("[]")
        got = {}

        def h(a):
            if isinstance(a, lt.listen_failed_alert):
                raise CmdError("listen failed: " + amsg(a))
            if isinstance(a, lt.listen_succeeded_alert):
                st = str(getattr(a, "socket_type", "")).lower()
                if "udp" in st or "utp" in amsg(a).lower():
                    got["port"] = int(a.port)
            return "port" in got and self.s.is_dht_running()

        deadline = time.monotonic() + timeout
        if not self.pump(deadline, h):
            # DHT may have come up between alerts
            if not ("port" in got and self.s.is_dht_running()):
                raise CmdError("DHT did not start within %.0fs" % timeout)
        self.port = got["port"]
        want_port = int(self.listen.rsplit(":", 1)[1])
        if want_port and self.port != want_port:
            raise CmdError("listening on port %d, not %d" % (self.port, want_port))
        while time.monotonic() < deadline:
            nid = self.read_node_id(want_host)
            if nid:
                self.node_id = nid
                return
            self.pump(time.monotonic() + 0.05)
        raise CmdError("no DHT node id within %.0fs" % timeout)

    def read_node_id(self, host):
        try:
            st = self.s.save_state(lt.save_state_flags_t.save_dht_state)
        except Exception:
            st = {b"dht state": self.s.dht_state()}
        ids = (st.get(b"dht state") or {}).get(b"node-id")
        if isinstance(ids, bytes):
            ids = [ids]
        if not ids:
            return None
        try:
            ip = ipaddress.ip_address(host).packed  # 4 or 16 bytes
        except ValueError:
            ip = None
        for e in ids:
            if ip is not None and e[20:] == ip:
                return e[:20].hex()
        return ids[0][:20].hex()

    # -- commands
    def cmd_info(self, c):
        return {"port": self.port, "node_id": self.node_id, "version": lt.__version__}

    def cmd_add_node(self, c):
        host, port = c.get("host"), c.get("port")
        if not isinstance(host, str) or not isinstance(port, int):
            raise CmdError("add_node needs host (string) and port (int)")
        self.s.add_dht_node((host, port))
        if not c.get("wait"):
            return {"ok": True}
        # wait until the node answered libtorrent's ping and is in its table
        want = ep_str((host, port))
        deadline = time.monotonic() + float(c.get("timeout", 5))
        while True:
            nodes = self.live_nodes(min(1.0, max(0.05, deadline - time.monotonic())))
            if any(n["addr"] == want for n in nodes):
                return {"ok": True, "in_table": True}
            if time.monotonic() >= deadline:
                return {"ok": True, "in_table": False}
            self.pump(min(deadline, time.monotonic() + 0.2))

    def live_nodes(self, timeout):
        nid = lt.sha1_hash(bytes.fromhex(self.node_id))
        self.s.dht_live_nodes(nid)
        out = []

        def h(a):
            if isinstance(a, lt.dht_live_nodes_alert):
                for n in a.nodes:
                    out.append({"id": str(n["nid"]), "addr": ep_str(n["endpoint"])})
                return True
            return False

        if not self.pump(time.monotonic() + timeout, h):
            raise CmdError("no dht_live_nodes_alert")
        return out

    def cmd_routing(self, c):
        nodes = self.live_nodes(2.0)
        self.s.post_dht_stats()
        stats = {}

        def h(a):
            if isinstance(a, lt.dht_stats_alert):
                stats["buckets"] = [{"num_nodes": b["num_nodes"], "num_replacements": b["num_replacements"]}
                                    for b in a.routing_table]
                stats["active_requests"] = len(a.active_requests)
                return True
            return False

        self.pump(time.monotonic() + 2.0, h)
        r = {"nodes": nodes, "count": len(nodes)}
        r.update(stats)
        return r

    def cmd_events(self, c):
        # Drain the alerts libtorrent has already posted, so that a packet it
        # received before this command arrived is reported.
        self.pump(time.monotonic() + 0.02)
        r = {"announces": self.ev_announces, "queries": self.ev_queries}
        self.ev_announces, self.ev_queries = [], []
        return r

    def lookup_tracker(self, ih, qnames):
        """Packet watcher following one lookup (outgoing queries named in
        qnames whose info_hash/target is ih): which nodes were queried and
        which answered."""
        st = {"outstanding": {}, "queried": [], "responded": [], "errors": [], "last": time.monotonic(),
              "values": []}

        def watch(direction, addr, pkt):
            a = pkt.get(b"a") or {}
            if direction == "out" and pkt.get(b"y") == b"q" and pkt.get(b"q") in qnames \
                    and (a.get(b"info_hash") == ih or a.get(b"target") == ih):
                st["outstanding"][(addr, pkt.get(b"t"))] = pkt.get(b"q")
                st["queried"].append(addr)
                st["last"] = time.monotonic()
            elif direction == "in" and pkt.get(b"y") in (b"r", b"e"):
                key = (addr, pkt.get(b"t"))
                if key in st["outstanding"]:
                    del st["outstanding"][key]
                    st["last"] = time.monotonic()
                    if pkt.get(b"y") == b"r":
                        st["responded"].append(addr)
                        vals = (pkt.get(b"r") or {}).get(b"values")
                        if isinstance(vals, list):
                            st["values"].extend(vals)
                    else:
                        st["errors"].append({"from": addr, "e": to_json(pkt.get(b"e"))})
        return st, watch

    def cmd_get_peers(self, c):
        ih = hex20(c.get("info_hash"), "info_hash")
        total = float(c.get("timeout", 10))
        quiet = float(c.get("quiet", 2))
        st, watch = self.lookup_tracker(ih, (b"get_peers",))
        peers = []
        start = time.monotonic()
        deadline = start + total

        def h(a):
            if isinstance(a, lt.dht_get_peers_reply_alert) and a.info_hash.to_bytes() == ih:
                for p in a.peers():
                    s = ep_str(p)
                    if s not in peers:
                        peers.append(s)
                st["last"] = time.monotonic()
            return False

        def done():
            now = time.monotonic()
            if st["queried"] and not st["outstanding"] and now - st["last"] >= 0.3:
                return True  # every query answered and nothing new for 0.3 s
            return now - max(st["last"], start) >= quiet

        self.pkt_watch = watch
        try:
            self.s.dht_get_peers(lt.sha1_hash(ih))
            self.pump(deadline, h, done)
        finally:
            self.pkt_watch = None
        return {"peers": peers, "queried": st["queried"], "responded": st["responded"],
                "errors": st["errors"], "unanswered": sorted({k[0] for k in st["outstanding"]}),
                "complete": bool(st["queried"]) and not st["outstanding"],
                "elapsed_ms": int((time.monotonic() - start) * 1000)}

    def cmd_announce(self, c):
        ih = hex20(c.get("info_hash"), "info_hash")
        total = float(c.get("timeout", 30))
        sent = {}      # (addr, t) -> record
        order = []
        state = {"first": None, "last": None}

        def watch(direction, addr, pkt):
            a = pkt.get(b"a") or {}
            if direction == "out" and pkt.get(b"q") == b"announce_peer" and a.get(b"info_hash") == ih:
                rec = {"addr": addr, "port": a.get(b"port"), "implied_port": a.get(b"implied_port", 0),
                       "reply": None}
                sent[(addr, pkt.get(b"t"))] = rec
                order.append(rec)
                now = time.monotonic()
                state["first"] = state["first"] or now
                state["last"] = now
            elif direction == "in" and pkt.get(b"y") in (b"r", b"e"):
                rec = sent.get((addr, pkt.get(b"t")))
                if rec is not None and rec["reply"] is None:
                    rec["reply"] = "r" if pkt.get(b"y") == b"r" else {"e": to_json(pkt.get(b"e"))}
                    state["last"] = time.monotonic()

        def done():
            if state["first"] is None:
                return False
            now = time.monotonic()
            if all(r["reply"] is not None for r in order) and now - state["last"] >= 0.3:
                return True
            return now - state["last"] >= 3.0  # replies still missing: give up on them

        start = time.monotonic()
        self.pkt_watch = watch
        try:
            key = ih.hex()
            if key in self.torrents:
                self.torrents[key].force_dht_announce()
            else:
                atp = lt.add_torrent_params()
                atp.info_hashes = lt.info_hash_t(lt.sha1_hash(ih))
                atp.save_path = self.tmpdir
                atp.flags = (lt.torrent_flags.default_flags & ~lt.torrent_flags.paused
                             & ~lt.torrent_flags.auto_managed) | lt.torrent_flags.upload_mode
                self.torrents[key] = self.s.add_torrent(atp)
            self.pump(start + total, None, done)
        finally:
            self.pkt_watch = None
        r = {"announced_to": order, "port": self.port,
             "elapsed_ms": int((time.monotonic() - start) * 1000)}
        if not order:
            r["error"] = "no announce_peer sent within %.0fs" % total
        if "port" in c and c["port"] != self.port:
            r["note"] = "libtorrent announces its own listen port %d with implied_port=1, not %s" % (
                self.port, c["port"])
        return r

    def wait_put(self, match, total):
        res = {}

        def h(a):
            if isinstance(a, lt.dht_put_alert) and match(a):
                res["num_success"] = int(a.num_success)
                res["seq"] = int(a.seq)
                res["signature"] = bytes(a.signature).hex() if a.signature else ""
                return True
            return False

        if not self.pump(time.monotonic() + total, h):
            raise CmdError("no dht_put_alert within %.0fs" % total)
        return res

    def cmd_put_immutable(self, c):
        total = float(c.get("timeout", 40))
        if "value_bencoded_hex" in c:
            try:
                v = lt.bdecode(bytes.fromhex(c["value_bencoded_hex"]))
            except Exception:
                raise CmdError("value_bencoded_hex: not valid bencoding")
            if v is None:
                raise CmdError("value_bencoded_hex: not valid bencoding")
        else:
            v = value_of(c)
        start = time.monotonic()
        target = self.s.dht_put_immutable_item(v).to_bytes()
        res = self.wait_put(lambda a: a.target.to_bytes() == target, total)
        return {"target": target.hex(), "num_success": res["num_success"],
                "elapsed_ms": int((time.monotonic() - start) * 1000)}

    def cmd_get_immutable(self, c):
        target = hex20(c.get("target"), "target")
        total = float(c.get("timeout", 40))
        res = {}

        def h(a):
            if isinstance(a, lt.dht_immutable_item_alert) and a.target.to_bytes() == target:
                msg = amsg(a)
                if msg.rstrip().endswith("[ <uninitialized> ]"):
                    res["found"] = False
                    return True
                res["found"] = True
                try:
                    v = a.item["value"]  # only works when the item is a string
                    res.update(string_reply(bytes(v)))
                except Exception:
                    res["value"] = None  # int/list/dict: only libtorrent's printout
                res["repr"] = msg.split(" [ ", 1)[1].rsplit(" ]", 1)[0] if " [ " in msg else msg
                return True
            return False

        start = time.monotonic()
        self.s.dht_get_immutable_item(lt.sha1_hash(target))
        if not self.pump(start + total, h):
            raise CmdError("no dht_immutable_item_alert within %.0fs" % total)
        res["elapsed_ms"] = int((time.monotonic() - start) * 1000)
        return res

    def cmd_put_mutable(self, c):
        try:
            seed = bytes.fromhex(c.get("seed", ""))
        except (TypeError, ValueError):
            raise CmdError("seed: not hex")
        sk, pk = ed25519_from_seed(seed)
        salt = c.get("salt", "")
        if not isinstance(salt, str):
            raise CmdError("salt: string required")
        salt_s, salt = salt, salt.encode("utf-8")
        v = value_of(c)
        total = float(c.get("timeout", 40))
        start = time.monotonic()
        self.s.dht_put_mutable_item(sk, pk, v, salt)
        res = self.wait_put(lambda a: bytes(a.public_key) == pk and a.salt == salt_s, total)
        return {"public_key": pk.hex(), "seq": res["seq"], "num_success": res["num_success"],
                "signature": res["signature"], "target": hashlib.sha1(pk + salt).hexdigest(),
                "elapsed_ms": int((time.monotonic() - start) * 1000)}

    def cmd_get_mutable(self, c):
        try:
            pk = bytes.fromhex(c.get("public_key", ""))
        except (TypeError, ValueError):
            raise CmdError("public_key: not hex")
        if len(pk) != 32:
            raise CmdError("public_key: want 32 bytes")
        salt = c.get("salt", "")
        if not isinstance(salt, str):
            raise CmdError("salt: string required")
        salt_s, salt = salt, salt.encode("utf-8")
        total = float(c.get("timeout", 40))
        best = {}

        def h(a):
            # a.salt is a str in these bindings (and raises for non-UTF-8 salt)
            if not (isinstance(a, lt.dht_mutable_item_alert) and bytes(a.key) == pk
                    and a.salt == salt_s):
                return False
            msg = amsg(a)
            seq = int(a.seq)
            auth = bool(a.authoritative)
            sig = bytes(a.signature)
            found = any(sig) and not msg.rstrip().endswith("[ <uninitialized> ]")
            if found or not best:
                if not best or not best["found"] or seq >= best["seq"]:
                    best.clear()
                    best.update({"seq": seq, "found": found, "signature": sig.hex() if found else ""})
                    try:
                        best.update(string_reply(bytes(a.item["value"])))
                    except Exception:
                        best["value"] = None
                    best["repr"] = msg.split(") [ ", 1)[1].rsplit(" ]", 1)[0] if ") [ " in msg else msg
            if auth:
                best["authoritative"] = True
            return auth

        start = time.monotonic()
        self.s.dht_get_mutable_item(pk, salt)
        finished = self.pump(start + total, h)
        if not best:
            raise CmdError("no dht_mutable_item_alert within %.0fs" % total)
        best.setdefault("authoritative", False)
        best["complete"] = finished
        best["target"] = hashlib.sha1(pk + salt).hexdigest()
        best["elapsed_ms"] = int((time.monotonic() - start) * 1000)
        return best

    def close(self):
        for h in list(self.torrents.values()):
            try:
                self.s.remove_torrent(h)
            except Exception:
                pass
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def stdin_reader(q):
    for line in sys.stdin:
        q.put(line)
    q.put(None)


def main():
    global VERBOSE
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True, help="IP:PORT to bind (TCP and UDP), e.g. 127.0.0.2:6881")
    ap.add_argument("--verbose", action="store_true", help="log alerts and DHT packets to stderr")
    args = ap.parse_args()
    VERBOSE = args.verbose
    if ":" not in args.listen:
        emit({"event": "error", "error": "--listen wants IP:PORT"})
        return 1

    node = Node(args.listen, args.verbose)
    try:
        node.start()
    except CmdError as e:
        emit({"event": "error", "error": str(e)})
        return 1
    emit({"event": "ready", "port": node.port, "node_id": node.node_id, "version": lt.__version__})
    log("ready on %s port %d id %s" % (args.listen, node.port, node.node_id))

    q = queue.Queue()
    threading.Thread(target=stdin_reader, args=(q,), daemon=True).start()
    handlers = {
        "info": node.cmd_info,
        "add_node": node.cmd_add_node,
        "routing": node.cmd_routing,
        "events": node.cmd_events,
        "get_peers": node.cmd_get_peers,
        "announce": node.cmd_announce,
        "put_immutable": node.cmd_put_immutable,
        "get_immutable": node.cmd_get_immutable,
        "put_mutable": node.cmd_put_mutable,
        "get_mutable": node.cmd_get_mutable,
    }
    try:
        while True:
            try:
                line = q.get_nowait()
            except queue.Empty:
                node.pump(time.monotonic() + 0.05)  # keep draining alerts while idle
                continue
            if line is None:  # stdin closed: the test is gone
                break
            line = line.strip()
            if not line:
                continue
            try:
                c = json.loads(line)
                if not isinstance(c, dict):
                    raise ValueError("not an object")
            except ValueError as e:
                emit({"error": "bad json: %s" % e})
                continue
            rid = c.get("id")
            name = c.get("cmd")
            if name == "quit":
                r = {"ok": True}
                if rid is not None:
                    r["id"] = rid
                emit(r)
                break
            fn = handlers.get(name)
            try:
                if fn is None:
                    raise CmdError("unknown cmd %r" % (name,))
                r = fn(c)
            except CmdError as e:
                r = {"error": str(e)}
            except Exception as e:  # never die on a bad command
                r = {"error": "%s: %s" % (type(e).__name__, e)}
            if rid is not None:
                r["id"] = rid
            r.setdefault("cmd", name)
            emit(r)
    finally:
        node.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
