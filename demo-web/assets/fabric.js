// The fabric view: broadcaster(s) in the middle, workers around, pulses on
// each link at the rate events flow, and a table of every counter.

import { colorOf } from "/charts.js";

const NS = "http://www.w3.org/2000/svg";
const el = (name, attrs = {}, parent) => {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
};

export class FabricView {
  constructor(svg, table) {
    this.svg = svg;
    this.table = table;
    this.brokers = new Map();
    this.workers = new Map();
    this.me = null;
    this.pulses = [];
    this.layoutKey = "";
    const tick = (t) => {
      this.animate(t);
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }

  broadcaster(s) {
    this.brokers.set(s.id, { ...s, seen: Date.now() });
    this.render();
  }

  worker(s) {
    this.workers.set(s.worker, { ...s, seen: Date.now() });
    this.render();
  }

  layout() {
    const W = 900, H = 520;
    const brokers = [...this.brokers.keys()].sort();
    const workers = [...this.workers.keys()].sort();
    const pos = new Map();
    const nb = Math.max(brokers.length, 1);
    brokers.forEach((b, i) => pos.set("b:" + b, { x: W / 2 + (i - (nb - 1) / 2) * 160, y: H / 2 }));
    if (!brokers.length) pos.set("b:?", { x: W / 2, y: H / 2 });
    workers.forEach((w, i) => {
      const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(workers.length, 1);
      pos.set("w:" + w, { x: W / 2 + Math.cos(a) * 330, y: H / 2 + Math.sin(a) * 190 });
    });
    return { pos, brokers: brokers.length ? brokers : ["?"], workers };
  }

  render() {
    const { pos, brokers, workers } = this.layout();
    this.pos = pos;
    this.brokerIds = brokers;
    const key = brokers.join() + "|" + workers.join() + "|" + this.me;
    if (key !== this.layoutKey) {
      this.layoutKey = key;
      this.svg.replaceChildren();
      const defs = el("defs", {}, this.svg);
      const grad = el("radialGradient", { id: "glow" }, defs);
      el("stop", { offset: "0", "stop-color": "#7c5cff", "stop-opacity": ".55" }, grad);
      el("stop", { offset: "1", "stop-color": "#7c5cff", "stop-opacity": "0" }, grad);
      this.edgeLayer = el("g", {}, this.svg);
      this.pulseLayer = el("g", {}, this.svg);
      this.nodeLayer = el("g", {}, this.svg);
      this.nodes = new Map();
      for (const w of workers) {
        const p = pos.get("w:" + w);
        for (const b of brokers) {
          const q = pos.get("b:" + b);
          el("line", { class: "edge", x1: q.x, y1: q.y, x2: p.x, y2: p.y }, this.edgeLayer);
        }
        this.nodes.set("w:" + w, this.node(p, w, colorOf(w), w === this.me));
      }
      for (const b of brokers) {
        const q = pos.get("b:" + b);
        el("circle", { cx: q.x, cy: q.y, r: 90, fill: "url(#glow)" }, this.nodeLayer);
        this.nodes.set("b:" + b, this.node(q, "broadcaster " + b, "#7c5cff", false, true));
      }
    }
    for (const [w, s] of this.workers) {
      const n = this.nodes.get("w:" + w);
      if (!n) continue;
      const stale = Date.now() - s.seen > 3000;
      n.line1.textContent = `${s.ws} websockets · ${s.out_rate}/s out`;
      n.line2.textContent = stale ? "silent" : `cpu ${s.cpu}% · lag ${s.lag_ms.toFixed(1)} ms`;
      n.box.setAttribute("stroke-dasharray", stale ? "4 4" : "none");
    }
    for (const [b, s] of this.brokers) {
      const n = this.nodes.get("b:" + b);
      if (!n) continue;
      n.line1.textContent = `${s.in_rate}/s in · ${s.out_rate}/s out`;
      n.line2.textContent = `seq ${s.last_seq} · history ${s.history}`;
    }
    this.renderTable();
  }

  node(p, title, color, me, big) {
    const g = el("g", { class: "node", transform: `translate(${p.x},${p.y})` }, this.nodeLayer);
    const w = big ? 210 : 190, h = 64;
    const box = el("rect", { x: -w / 2, y: -h / 2, width: w, height: h, rx: 14, fill: "#161b33", stroke: color, "stroke-width": me ? 3 : 1.5 }, g);
    const t = el("text", { x: 0, y: -10, "text-anchor": "middle" }, g);
    t.textContent = me ? `${title} · you` : title;
    const line1 = el("text", { x: 0, y: 8, "text-anchor": "middle", class: "sub" }, g);
    const line2 = el("text", { x: 0, y: 23, "text-anchor": "middle", class: "sub" }, g);
    return { box, line1, line2 };
  }

  animate(t) {
    if (!this.pos || !this.pulseLayer) return;
    const dt = Math.min(0.1, (t - (this.last || t)) / 1000);
    this.last = t;
    // Spawn pulses in proportion (log-scaled) to each worker's delivery rate.
    for (const [w, s] of this.workers) {
      const p = this.pos.get("w:" + w);
      const q = this.pos.get("b:" + this.brokerIds[0]);
      if (!p || !q) continue;
      const rate = Math.log2(1 + (s.in_rate || 0)) * 1.2;
      if (Math.random() < rate * dt && this.pulses.length < 300) {
        const c = el("circle", { r: 4, class: "pulse", fill: colorOf(w) }, this.pulseLayer);
        this.pulses.push({ c, p, q, k: 0 });
      }
    }
    this.pulses = this.pulses.filter((u) => {
      u.k += dt * 1.1;
      if (u.k >= 1) {
        u.c.remove();
        return false;
      }
      u.c.setAttribute("cx", u.q.x + (u.p.x - u.q.x) * u.k);
      u.c.setAttribute("cy", u.q.y + (u.p.y - u.q.y) * u.k);
      u.c.setAttribute("opacity", String(1 - u.k * 0.6));
      return true;
    });
  }

  renderTable() {
    const rows = [];
    const td = (v, alert) => `<td${alert ? ' class="alert"' : ""}>${v}</td>`;
    for (const [b, s] of [...this.brokers].sort()) {
      rows.push(`<tr><td>broadcaster ${b}</td>${td(s.in_rate)}${td(s.out_rate)}${td(s.subscribers + " subs")}${td("–")}${td(s.dropped, s.dropped > 0)}${td("–")}${td("–")}${td(s.replays + " replays")}${td("–")}</tr>`);
    }
    for (const [w, s] of [...this.workers].sort()) {
      rows.push(`<tr><td>worker ${w}${w === this.me ? " (you)" : ""}</td>${td(s.in_rate)}${td(s.out_rate)}${td(s.ws)}${td(s.lag_ms.toFixed(1) + " ms")}${td("–")}${td(s.slow, s.slow > 0)}${td(s.gaps, s.gaps > 0)}${td(s.resumes + (s.resumes_partial ? ` (${s.resumes_partial} partial)` : ""))}${td(s.errors, s.errors > 0)}</tr>`);
    }
    this.table.querySelector("tbody").innerHTML = rows.join("");
  }
}
