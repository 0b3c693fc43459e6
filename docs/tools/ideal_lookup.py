#!/usr/bin/env python3
"""Round trips of an idealised BEP 5 lookup (docs/sim.md, "An ideal lookup").

Every node is reachable, answers at once and loses nothing; queries go out
in synchronous waves, so a node's chain is the shortest that named it.
Each node's bucket b holds a fixed random sample of the nodes sharing
exactly b bits with its id: the extended table's 16/8/4/2 times K for
buckets 0 to 3, K (times --deep) after them, each scaled by --fill (the
deep buckets by 1.6 times it, capped at 1: the simulator's warm-up fills
them better than the far ones). A lookup seeds with its own table, asks
the --alpha closest unasked nodes per wave until a wave brings nothing
closer, then the K closest and two spares per wave, and ends when the K
closest it knows have all answered: its round trips are the longest chain
among them, as the simulator's rtt_p50 counts them.

    python3 docs/tools/ideal_lookup.py --nodes 80000 --fill 0.4
"""
import argparse
import bisect
import random
from collections import Counter

K, BITS = 8, 64

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--nodes", type=int, default=8000, help="reachable nodes")
p.add_argument("--lookups", type=int, default=300)
p.add_argument("--alpha", type=int, default=5)
p.add_argument("--deep", type=int, default=1, help="K times this in buckets 4 and after")
p.add_argument("--fill", type=float, default=1.0, help="share of each bucket filled")
p.add_argument("--seed", type=int, default=1)
o = p.parse_args()

rnd = random.Random(o.seed)
ids = sorted(rnd.getrandbits(BITS) for _ in range(o.nodes))


def cpl(a, b):
    return BITS - (a ^ b).bit_length()


def capacity(b):
    c = K * (16 >> b if b < 4 else o.deep)
    return max(1, round(c * (o.fill if b < 4 else min(1, 1.6 * o.fill))))


def span(prefix, bits):
    lo = prefix << (BITS - bits)
    return bisect.bisect_left(ids, lo), bisect.bisect_left(ids, lo + (1 << (BITS - bits)))


buckets = {}


def bucket(x, b):
    if (x, b) not in buckets:
        i, j = span((x >> (BITS - b - 1)) ^ 1, b + 1)
        r = ids[i:j]
        c = capacity(b)
        buckets[(x, b)] = r if len(r) <= c else random.Random(x ^ b).sample(r, c)
    return buckets[(x, b)]


def answer(x, t):
    """The K closest to t that x knows: its bucket for t, then deeper ones."""
    b = cpl(x, t)
    known, d = list(bucket(x, b)), b + 1
    while len(known) < 4 * K and d < BITS:
        known += bucket(x, d)
        d += 1
    return sorted((n for n in known if n != x), key=lambda n: n ^ t)[:K]


def table(x):
    out = []
    for b in range(BITS):
        out += bucket(x, b)
        i, j = span(x >> (BITS - b - 1), b + 1)
        if j - i <= K:  # what is left is our own small neighbourhood
            return out + [n for n in ids[i:j] if n != x]
    return out


def lookup(x, t):
    depth = dict.fromkeys(table(x), 1)
    asked, converged = set(), False
    while True:
        order = sorted(depth, key=lambda n: n ^ t)
        if all(n in asked for n in order[:K]):
            return max(depth[n] for n in order[:K])
        wave = [n for n in order if n not in asked][: K + 2 if converged else o.alpha]
        asked.update(wave)
        for n in wave:
            for m in answer(n, t):
                if m != x and m not in asked and depth.get(m, 99) > depth[n] + 1:
                    depth[m] = depth[n] + 1
        converged = min(depth, key=lambda n: n ^ t) == order[0]


rounds = sorted(lookup(ids[rnd.randrange(o.nodes)], rnd.getrandbits(BITS)) for _ in range(o.lookups))
pct = lambda q: rounds[int(len(rounds) * q)]
print(f"nodes {o.nodes} alpha {o.alpha} deep {o.deep} fill {o.fill}: "
      f"round trips p50/p90/p99 {pct(0.5)}/{pct(0.9)}/{pct(0.99)}, "
      f"share at most 3 {100 * sum(r <= 3 for r in rounds) / len(rounds):.0f}%, "
      f"{dict(sorted(Counter(rounds).items()))}")
