// dhtd status page: polls /v1/status and draws it. No external requests,
// no build step. After each render it bumps window.dhtdRenders and fires a
// "dhtd:rendered" event (the browser test waits for it).
"use strict";
(() => {
  const SVGNS = "http://www.w3.org/2000/svg";
  const CX = 200, CY = 200, R = 160;
  const POLL_MS = 2000;
  window.dhtdRenders = 0;

  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, text) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const svgEl = (tag, attrs) => {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  };
  // angle of an id: its first 32 bits as a fraction of the circle,
  // clockwise from the top.
  const fraction = (hex) => parseInt(hex.slice(0, 8), 16) / 4294967296;
  const point = (f, r) => {
    const a = 2 * Math.PI * f - Math.PI / 2;
    return [CX + r * Math.cos(a), CY + r * Math.sin(a)];
  };
  // Buckets in blues to violets: red, amber and green mean a node's state.
  const hue = (bucket) => 190 + ((bucket * 29) % 90);
  const bucketColour = (bucket) => `hsl(${hue(bucket)} 55% 50%)`;
  const HISTORY_EVERY = 5; // polls: the charts' samples change every 10 s
  let polls = 0;
  const duration = (s) => {
    s = Math.floor(s);
    const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + (s % 60) + "s";
  };

  // arc draws the part of the keyspace a bucket covers: ids sharing the
  // first index bits with ours and differing at bit index (the last bucket
  // covers everything sharing at least index bits).
  function bucketArc(selfHex, index, last) {
    const bits = BigInt("0x" + selfHex);
    const width = 160n;
    let lo, span;
    if (last) {
      const keep = BigInt(index);
      const mask = ((1n << keep) - 1n) << (width - keep);
      lo = bits & mask;
      span = 1n << (width - keep);
    } else {
      const keep = BigInt(index + 1);
      const mask = ((1n << keep) - 1n) << (width - keep);
      lo = (bits ^ (1n << (width - keep))) & mask;
      span = 1n << (width - keep);
    }
    const scale = 1n << 128n; // keep 32 bits of precision
    const f0 = Number(lo / scale) / 4294967296;
    const f1 = f0 + Number(span / scale) / 4294967296;
    return [f0, f1];
  }

  function arcPath(f0, f1, r) {
    if (f1 - f0 >= 0.9999) f1 = f0 + 0.9999;
    const [x0, y0] = point(f0, r), [x1, y1] = point(f1, r);
    const large = f1 - f0 > 0.5 ? 1 : 0;
    return `M ${x0} ${y0} A ${r} ${r} 0 ${large} 1 ${x1} ${y1}`;
  }

  function drawKeyspace(st) {
    const marks = $("marks"), arcs = $("arcs");
    marks.replaceChildren();
    arcs.replaceChildren();
    for (const b of st.buckets) {
      if (b.nodes.length === 0) continue;
      const [f0, f1] = bucketArc(st.id, b.index, b.last);
      // very narrow arcs (deep buckets) still get a visible sliver
      const path = svgEl("path", { class: "arc", d: arcPath(f0, Math.max(f1, f0 + 0.004), R + 14), stroke: bucketColour(b.index) });
      arcs.append(path);
    }
    for (const b of st.buckets) {
      for (const n of b.nodes) {
        const [x, y] = point(fraction(n.id), R);
        const c = svgEl("circle", {
          class: "node st-" + n.state, cx: x.toFixed(2), cy: y.toFixed(2), r: 6,
          "data-id": n.id, "data-bucket": b.index, "data-state": n.state,
        });
        const title = svgEl("title");
        title.textContent = `${n.id}\n${n.addr}\nbucket ${b.index}, ${n.state}, rtt ${n.rtt_ms.toFixed(1)} ms`;
        c.append(title);
        marks.append(c);
      }
    }
    const f = fraction(st.id);
    const [x, y] = point(f, R);
    marks.append(svgEl("line", { class: "self-line", x1: CX, y1: CY, x2: x, y2: y }));
    const s = 9;
    const self = svgEl("path", { class: "self", "data-self-id": st.id, d: `M ${x} ${y - s} L ${x + s} ${y} L ${x} ${y + s} L ${x - s} ${y} Z` });
    const title = svgEl("title");
    title.textContent = "this node: " + st.id;
    self.append(title);
    marks.append(self);
  }

  function drawBuckets(st) {
    fillBuckets($("buckets").tBodies[0], st.buckets);
  }

  // drawFamilies shows the node of each address family (BEP 32 dual
  // stack): its id, address and table counts, and its buckets that hold
  // nodes.
  function drawFamilies(st) {
    const box = $("families");
    box.replaceChildren();
    for (const f of st.families || []) {
      const sec = el("div", { class: "family", "data-family": f.family });
      sec.append(el("h3", {}, f.family));
      const dl = el("dl");
      dl.append(
        el("dt", {}, "id"), el("dd", { class: "family-id" }, f.id),
        el("dt", {}, "address"), el("dd", { class: "family-addr" }, f.address),
        el("dt", {}, "ready"), el("dd", {}, f.ready ? "yes" : "no"),
        el("dt", {}, "table"), el("dd", { class: "family-counts" }, `${f.good} good, ${f.questionable} questionable, ${f.bad} bad`),
      );
      const table = el("table", { class: "family-buckets" });
      const head = el("tr");
      for (const h of ["#", "fill", "nodes", "cache"]) head.append(el("th", {}, h));
      table.append(el("thead"), el("tbody"));
      table.tHead.append(head);
      fillBuckets(table.tBodies[0], f.buckets.filter((b) => b.nodes.length > 0 || b.replacements > 0 || b.last));
      sec.append(dl, table);
      box.append(sec);
    }
  }

  function fillBuckets(body, buckets) {
    body.replaceChildren();
    for (const b of buckets) {
      const tr = el("tr", { "data-bucket": b.index });
      tr.append(el("td", {}, String(b.index) + (b.last ? " (ours)" : "")));
      const bar = el("span", { class: "bar", title: `${b.nodes.length} of ${b.capacity}` });
      const fill = el("span");
      fill.style.width = Math.min(100, (100 * b.nodes.length) / b.capacity) + "%";
      fill.style.background = bucketColour(b.index);
      bar.append(fill);
      const td = el("td");
      td.append(bar);
      tr.append(td, el("td", {}, `${b.nodes.length}/${b.capacity}`), el("td", {}, String(b.replacements)));
      body.append(tr);
    }
  }

  function drawLookups(st) {
    const body = $("lookups").tBodies[0];
    body.replaceChildren();
    for (const l of st.recent_lookups) {
      const tr = el("tr", { class: "lookup" });
      tr.append(
        el("td", {}, duration(l.age_s) + " ago"),
        el("td", {}, l.kind),
        el("td", { title: l.target }, l.target.slice(0, 12) + "…"),
        el("td", { class: "outcome-" + l.outcome }, l.outcome.replace("_", " ")),
        el("td", { class: "wide-only" }, String(l.queries)),
        el("td", { class: "wide-only" }, String(l.failed)),
        el("td", {}, l.elapsed_ms.toFixed(0) + " ms"),
      );
      body.append(tr);
    }
  }

  function render(st) {
    $("node-id").textContent = st.id;
    $("uptime").textContent = duration(st.uptime_s);
    $("addresses").replaceChildren(...st.addresses.flatMap((a, i) => [i ? " " : "", el("span", { class: "addr" }, a)]));
    const b42 = st.bep42;
    $("bep42").textContent = b42.mode + (b42.external_ip
      ? `; external IP ${b42.external_ip}, our id ${b42.id_matches_ip ? "matches it" : "does not match it"}`
      : "; external IP not known yet");
    $("ready").textContent = st.ready ? "yes" : "no";
    $("table-counts").textContent = `${st.good} good, ${st.questionable} questionable, ${st.bad} bad`;
    const s = st.stored;
    $("stored").textContent = `${s.peers} peers for ${s.infohashes} infohashes; ${s.immutable} immutable and ${s.mutable} mutable items (${s.item_bytes} bytes)`;
    drawKeyspace(st);
    drawBuckets(st);
    drawFamilies(st);
    drawLookups(st);
    if (st.history) drawCharts(st);
    window.dhtdRenders++;
    window.dispatchEvent(new CustomEvent("dhtd:rendered", { detail: { nodes: document.querySelectorAll("#marks .node").length } }));
  }

  const PALETTE = ["#2f6fb7", "#9a5ec4", "#2e9e8f", "#c45e8a", "#7a8a2e", "#5e6ec4", "#b7862f", "#444"];

  // chart draws series (name -> values, one per sample) as lines in the
  // chart named name, scaled to the largest value; the caption shows the
  // latest values.
  function chart(name, series) {
    const fig = document.querySelector(`.chart[data-chart="${name}"]`);
    const svg = fig.querySelector("svg");
    svg.replaceChildren();
    let top = 0, len = 0;
    for (const v of Object.values(series)) {
      len = Math.max(len, v.length);
      for (const x of v) top = Math.max(top, x);
    }
    top = top > 0 ? top * 1.1 : 1;
    const names = Object.keys(series).sort();
    names.forEach((k, i) => {
      const v = series[k];
      const step = 360 / Math.max(1, 359);
      const x0 = 360 - (v.length - 1) * step;
      const pts = v.map((y, j) => `${(x0 + j * step).toFixed(1)},${(100 - (100 * y) / top).toFixed(1)}`).join(" ");
      const line = svgEl("polyline", { points: pts, stroke: PALETTE[i % PALETTE.length], "data-series": k });
      const t = svgEl("title");
      t.textContent = k;
      line.append(t);
      svg.append(line);
    });
    const last = names.map((k) => `${k} ${(series[k][series[k].length - 1] || 0).toFixed(1)}`);
    fig.querySelector(".now").textContent = last.length ? "now: " + last.join(", ") : "(no data yet)";
    fig.dataset.samples = String(len);
  }

  // byKey turns samples' maps (method or reason -> rate) into series.
  function byKey(hist, field) {
    const keys = new Set();
    for (const s of hist) for (const k of Object.keys(s[field] || {})) keys.add(k);
    const out = {};
    for (const k of keys) out[k] = hist.map((s) => (s[field] || {})[k] || 0);
    return out;
  }

  // seriesOf is every chart's series of one node's history.
  function seriesOf(hist) {
    return {
      packets: { in: hist.map((s) => s.packets_in), out: hist.map((s) => s.packets_out) },
      answers: byKey(hist, "answers"),
      drops: byKey(hist, "drops"),
      lookups: { p50: hist.map((s) => s.lookup_p50_ms), p99: hist.map((s) => s.lookup_p99_ms) },
      table: { nodes: hist.map((s) => s.table_size) },
    };
  }

  // drawCharts draws the primary node's history or, on a dual-stack node,
  // each family's, its series named after the family ("in ipv6").
  function drawCharts(st) {
    const fams = (st.families || []).filter((f) => f.history);
    let charts = seriesOf(st.history);
    if (fams.length > 1) {
      charts = {};
      for (const f of fams) {
        for (const [name, series] of Object.entries(seriesOf(f.history))) {
          charts[name] = charts[name] || {};
          for (const [k, v] of Object.entries(series)) charts[name][k + " " + f.family] = v;
        }
      }
    }
    for (const [name, series] of Object.entries(charts)) chart(name, series);
  }

  async function poll() {
    try {
      const withHistory = polls++ % HISTORY_EVERY === 0;
      const resp = await fetch("/v1/status" + (withHistory ? "?history=1" : ""), { cache: "no-store" });
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      render(await resp.json());
      $("conn").textContent = "live, updated " + new Date().toLocaleTimeString();
      $("conn").className = "conn";
    } catch (e) {
      $("conn").textContent = "disconnected: " + e.message;
      $("conn").className = "conn err";
    }
    setTimeout(poll, POLL_MS);
  }
  poll();
})();
