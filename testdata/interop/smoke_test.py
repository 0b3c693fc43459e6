#!/usr/bin/python3
"""Smoke test for ltnode.py: two libtorrent nodes (127.0.0.2 and 127.0.0.3)
that know each other; exercises every command. Run:

    /usr/bin/python3 testdata/interop/smoke_test.py [--verbose]

Exit status 0 when every check passes. Takes a few seconds.
"""

import hashlib
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
PUB = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"  # from test-vectors.json
# test-vectors.json bep44 "derived A": seq 1, no salt, v = 12:Hello World!
SIG_A = ("8c2070fc66e456d36c9177eb1570448eba3068c1f7c74f2cc9a3af506bed7a9d"
         "bfb74481eeb2185684d591a0f87b6ec8cd911ecabc49f68f5f3e973b8df9d908")


class LT:
    def __init__(self, listen, verbose=False):
        args = ["/usr/bin/python3", os.path.join(HERE, "ltnode.py"), "--listen", listen]
        if verbose:
            args.append("--verbose")
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=None if verbose else subprocess.DEVNULL, text=True)
        self.n = 0
        self.ready = self._read(15)
        if self.ready.get("event") != "ready":
            raise SystemExit("not ready: %r" % self.ready)
        self.addr = "%s:%d" % (listen.rsplit(":", 1)[0], self.ready["port"])

    def _read(self, timeout):
        out = {}

        def rd():
            out["line"] = self.p.stdout.readline()
        t = threading.Thread(target=rd, daemon=True)
        t.start()
        t.join(timeout)
        if "line" not in out:
            raise SystemExit("timeout reading from ltnode")
        if not out["line"]:
            raise SystemExit("ltnode exited")
        return json.loads(out["line"])

    def call(self, cmd, read_timeout=60, **kw):
        self.n += 1
        kw.update(cmd=cmd, id=self.n)
        t = time.monotonic()
        self.p.stdin.write(json.dumps(kw) + "\n")
        self.p.stdin.flush()
        r = self._read(read_timeout)
        assert r.get("id") == self.n, r
        print("%-14s %6.2fs %s" % (cmd, time.monotonic() - t, json.dumps(r)[:400]))
        return r

    def quit(self):
        try:
            self.call("quit", read_timeout=10)
        finally:
            self.p.wait(10)


FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILS.append(what)


def main():
    verbose = "--verbose" in sys.argv
    a = LT("127.0.0.2:0", verbose)
    b = LT("127.0.0.3:0", verbose)
    try:
        bhost, bport = b.addr.split(":")
        ahost, aport = a.addr.split(":")
        r = a.call("add_node", host=bhost, port=int(bport), wait=True)
        check(r.get("in_table") is True, "a has b in its table")
        r = b.call("add_node", host=ahost, port=int(aport), wait=True)
        check(r.get("in_table") is True, "b has a in its table")
        r = a.call("routing")
        check(any(n["addr"] == b.addr and n["id"] == b.ready["node_id"] for n in r["nodes"]),
              "routing lists b with its id")

        r = a.call("put_immutable", value="Hello World!")
        check(r.get("target") == "e5f96f6f38320f0f33959cb4d3d656452117aadb", "immutable target = BEP 44 vector")
        check(r.get("num_success", 0) >= 1, "immutable put stored somewhere")
        r = b.call("get_immutable", target="e5f96f6f38320f0f33959cb4d3d656452117aadb")
        check(r.get("found") and r.get("value") == "Hello World!", "b gets the immutable item")
        r = b.call("get_immutable", target="11" * 20)
        check(r.get("found") is False, "missing immutable item reported as not found")
        r = a.call("put_immutable", value_bencoded_hex=b"d1:a1:b1:ni1ee".hex())
        check(r.get("target") == "d558dd8618cd2a5f5888ab637e0209269448fd8c", "dict immutable target")
        r = b.call("get_immutable", target="d558dd8618cd2a5f5888ab637e0209269448fd8c")
        check(r.get("found") and r.get("value") is None and "'a'" in r.get("repr", ""),
              "dict immutable item comes back as repr only")

        r = a.call("put_mutable", seed=SEED, value="Hello World!", salt="")
        check(r.get("public_key") == PUB, "public key from seed = Go's NewKeyFromSeed")
        check(r.get("seq") == 1 and r.get("num_success", 0) >= 1, "first mutable put has seq 1")
        check(r.get("target") == hashlib.sha1(bytes.fromhex(PUB)).hexdigest(), "mutable target")
        sig1 = r.get("signature")
        check(sig1 == SIG_A, "signature = test-vectors.json 'derived A' (Go ed25519.Sign)")
        r = b.call("get_mutable", public_key=PUB, salt="")
        check(r.get("found") and r.get("value") == "Hello World!" and r.get("seq") == 1
              and r.get("authoritative") and r.get("signature") == sig1, "b gets the mutable item")
        r = a.call("put_mutable", seed=SEED, value="second", salt="")
        check(r.get("seq") == 2, "second mutable put: libtorrent picks seq 2")
        r = b.call("get_mutable", public_key=PUB, salt="")
        check(r.get("value") == "second" and r.get("seq") == 2, "b sees the update")
        r = a.call("put_mutable", seed=SEED, value="salted", salt="foobar")
        check(r.get("seq") == 1, "salted item is separate (seq 1)")
        r = b.call("get_mutable", public_key=PUB, salt="foobar")
        check(r.get("value") == "salted", "b gets the salted item")
        r = b.call("get_mutable", public_key=PUB, salt="nothing-here")
        check(r.get("found") is False and r.get("authoritative"), "missing mutable item: found=false")

        ih = "aa" * 20
        r = a.call("get_peers", info_hash=ih)
        check(r.get("peers") == [] and r.get("complete"), "get_peers before announce: no peers, complete")
        b.call("events")  # clear
        r = a.call("announce", info_hash=ih, port=int(aport))
        check(any(x["addr"] == b.addr and x["reply"] == "r" for x in r.get("announced_to", [])),
              "a announced to b and b accepted")
        check(all(x["implied_port"] == 1 for x in r.get("announced_to", [])), "announce uses implied_port=1")
        r = b.call("events")
        check(any(e["info_hash"] == ih and e["port"] == int(aport) for e in r["announces"]),
              "b saw the announce with a's port")
        r = b.call("get_peers", info_hash=ih)
        check(a.addr in r.get("peers", []), "b finds a as a peer")
        r = a.call("announce", info_hash=ih)
        check(any(x["addr"] == b.addr for x in r.get("announced_to", [])),
              "second announce of the same info-hash (force_dht_announce) is sent")

        r = a.call("bogus")
        check("error" in r, "unknown command -> error")
        r = a.call("get_immutable", target="zz")
        check("error" in r, "bad hex -> error")
    finally:
        a.quit()
        b.quit()
    print("FAILED: %d" % len(FAILS) if FAILS else "PASS")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
