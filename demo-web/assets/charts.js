// A small live line chart on <canvas>: one series per key, last N points.

export const PALETTE = ["#7c5cff", "#22d3ee", "#34d399", "#fbbf24", "#f472b6", "#60a5fa", "#f87171", "#a3e635"];

export function colorOf(name) {
  const n = parseInt(String(name).replace(/\D+/g, ""), 10);
  if (!Number.isNaN(n)) return PALETTE[(n - 1 + PALETTE.length) % PALETTE.length];
  let h = 0;
  for (const c of String(name)) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}

export class LineChart {
  constructor(canvas, { points = 60, unit = "", minMax = 1 } = {}) {
    this.canvas = canvas;
    this.points = points;
    this.unit = unit;
    this.minMax = minMax;
    this.series = new Map();
    this.dirty = true;
    const loop = () => {
      if (this.dirty && canvas.offsetParent !== null) this.draw();
      requestAnimationFrame(loop);
    };
    requestAnimationFrame(loop);
    addEventListener("resize", () => (this.dirty = true));
  }

  push(key, value) {
    let s = this.series.get(key);
    if (!s) {
      s = [];
      this.series.set(key, s);
    }
    s.push(value);
    if (s.length > this.points) s.shift();
    this.dirty = true;
  }

  draw() {
    this.dirty = false;
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth, h = c.clientHeight;
    if (c.width !== w * dpr || c.height !== h * dpr) {
      c.width = w * dpr;
      c.height = h * dpr;
    }
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const pad = { l: 46, r: 12, t: 10, b: 26 };
    let max = 0;
    for (const s of this.series.values()) for (const v of s) max = Math.max(max, v);
    max = niceMax(Math.max(max, this.minMax));
    const x = (i) => pad.l + (i / (this.points - 1)) * (w - pad.l - pad.r);
    const y = (v) => h - pad.b - (v / max) * (h - pad.t - pad.b);
    g.font = "11px system-ui, sans-serif";
    g.fillStyle = "#8a90b0";
    g.strokeStyle = "rgba(37,43,74,.9)";
    g.lineWidth = 1;
    for (let k = 0; k <= 4; k++) {
      const v = (max * k) / 4;
      const yy = Math.round(y(v)) + 0.5;
      g.beginPath();
      g.moveTo(pad.l, yy);
      g.lineTo(w - pad.r, yy);
      g.stroke();
      g.fillText(fmt(v, max) + this.unit, 4, yy + 4);
    }
    g.fillText(`${this.points}s`, pad.l, h - 8);
    g.fillText("now", w - pad.r - 22, h - 8);
    const keys = [...this.series.keys()].sort();
    let lx = pad.l + 40;
    for (const key of keys) {
      const s = this.series.get(key);
      const col = colorOf(key);
      const off = this.points - s.length;
      g.beginPath();
      s.forEach((v, i) => (i ? g.lineTo(x(i + off), y(v)) : g.moveTo(x(i + off), y(v))));
      g.strokeStyle = col;
      g.lineWidth = 2;
      g.lineJoin = "round";
      g.stroke();
      // soft fill under the line
      g.lineTo(x(s.length - 1 + off), y(0));
      g.lineTo(x(off), y(0));
      g.closePath();
      g.fillStyle = col + "18";
      g.fill();
      g.fillStyle = col;
      g.fillRect(lx, h - 14, 10, 3);
      g.fillStyle = "#c9cde3";
      g.fillText(key, lx + 14, h - 9);
      lx += 18 + g.measureText(key).width + 12;
    }
  }
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 4, 6, 8, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function fmt(v, max) {
  const d = max < 2 ? 2 : max < 20 ? 1 : 0;
  return String(Number(v.toFixed(d)));
}
