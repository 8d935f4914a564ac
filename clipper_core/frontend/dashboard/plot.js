// A small line chart on a canvas: a rolling window of points, several series, optional
// threshold line (the SLO). No dependencies.
"use strict";

class LineChart {
  constructor(canvas, { title, unit = "", series, threshold = null, window = 60 }) {
    this.canvas = canvas;
    this.title = title;
    this.unit = unit;
    this.series = series; // [{ name, color }]
    this.threshold = threshold; // { value, label } or null
    this.window = window;
    this.points = []; // [[t, v0, v1, ...]]
  }

  push(t, values) {
    this.points.push([t, ...values]);
    if (this.points.length > this.window) this.points.shift();
    this.draw();
  }

  last(index = 0) {
    const p = this.points[this.points.length - 1];
    return p ? p[index + 1] : null;
  }

  draw() {
    const c = this.canvas, ctx = c.getContext("2d");
    const w = c.width, h = c.height, left = 44, right = 8, top = 18, bottom = 16;
    ctx.clearRect(0, 0, w, h);
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#1d2330";
    ctx.fillText(this.title + (this.unit ? ` (${this.unit})` : ""), left, 12);
    const values = this.points.flatMap(p => p.slice(1)).filter(v => Number.isFinite(v));
    if (this.threshold) values.push(this.threshold.value);
    const max = (Math.max(0, ...values) || 1) * 1.1;
    const plotW = w - left - right, plotH = h - top - bottom;
    const y = v => top + plotH - (v / max) * plotH;
    const x = i => left + (this.window <= 1 ? 0 : (i / (this.window - 1)) * plotW);
    ctx.strokeStyle = "#dde1e8";
    ctx.fillStyle = "#6b7385";
    ctx.lineWidth = 1;
    for (const frac of [0, 0.5, 1]) {
      const v = max * frac;
      ctx.beginPath(); ctx.moveTo(left, y(v)); ctx.lineTo(w - right, y(v)); ctx.stroke();
      ctx.fillText(formatNumber(v), 2, y(v) + 4);
    }
    if (this.threshold) {
      ctx.strokeStyle = "#c53030";
      ctx.setLineDash([4, 3]);
      ctx.beginPath();
      ctx.moveTo(left, y(this.threshold.value)); ctx.lineTo(w - right, y(this.threshold.value));
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = "#c53030";
      ctx.fillText(this.threshold.label, w - right - 40, y(this.threshold.value) - 3);
    }
    const offset = this.window - this.points.length;
    this.series.forEach((s, k) => {
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 1.6;
      ctx.beginPath();
      let started = false;
      this.points.forEach((p, i) => {
        const v = p[k + 1];
        if (!Number.isFinite(v)) { started = false; return; }
        if (started) ctx.lineTo(x(i + offset), y(v)); else ctx.moveTo(x(i + offset), y(v));
        started = true;
      });
      ctx.stroke();
      ctx.fillStyle = s.color;
      const last = this.last(k);
      ctx.fillText(`${s.name} ${Number.isFinite(last) ? formatNumber(last) : "-"}`,
                   left + 8 + k * 110, h - 3);
    });
  }
}

function formatNumber(v) {
  if (!Number.isFinite(v)) return "-";
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (a >= 1e3) return (v / 1e3).toFixed(1) + "k";
  if (a >= 10 || v === Math.round(v)) return v.toFixed(0);
  return v.toFixed(2);
}
