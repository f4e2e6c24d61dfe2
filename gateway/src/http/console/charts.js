// The maas console: charts drawn as inline SVG (time series, bars, histograms).
// A classic script loaded after app.js (see index.html); it shares app.js's helpers.
'use strict';

function niceStep(raw) {
  const power = 10 ** Math.floor(Math.log10(raw));
  const unit = raw / power;
  return (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10) * power;
}

/** Upper end and ticks of a value axis that starts at 0. */
function valueAxis(max, { integer = false, count = 4 } = {}) {
  let step = niceStep(Math.max(max, integer ? 1 : 1e-9) / count);
  if (integer) step = Math.max(1, Math.round(step));
  const top = Math.max(step, Math.ceil(max / step) * step);
  const ticks = [];
  for (let v = 0; v <= top + step / 2; v += step) ticks.push(v);
  return { top, ticks };
}

const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800].map((s) => s * 1000);

function timeTicks(t0, t1, count = 5) {
  const step = TIME_STEPS.find((s) => (t1 - t0) / s <= count) || TIME_STEPS[TIME_STEPS.length - 1];
  const offset = new Date(t0).getTimezoneOffset() * 60000;
  const ticks = [];
  for (let t = Math.ceil((t0 - offset) / step) * step + offset; t <= t1; t += step) ticks.push(t);
  const d = (t) => new Date(t);
  const sameDay = d(t0).toDateString() === d(t1).toDateString();
  const label = (t) => {
    const time = step < 60000 ? `${pad(d(t).getHours())}:${pad(d(t).getMinutes())}:${pad(d(t).getSeconds())}` : `${pad(d(t).getHours())}:${pad(d(t).getMinutes())}`;
    return sameDay ? time : `${pad(d(t).getMonth() + 1)}-${pad(d(t).getDate())} ${time}`;
  };
  return ticks.map((t) => ({ t, label: label(t) }));
}

/**
 * A chart of values over time: `series` is [{name, cls, shape, points: [{t, y, title}]}].
 * Points of a series are joined in time order unless the series says `line: false`.
 */
function timeChart(series, { yLabel, width = 560, height = 210 } = {}) {
  const m = { l: 48, r: 16, t: 14, b: 30 };
  const points = series.flatMap((s) => s.points);
  let t0 = Math.min(...points.map((p) => p.t));
  let t1 = Math.max(...points.map((p) => p.t));
  // At least ten seconds wide, so that a burst of events does not collapse into one point.
  const padding = Math.max((t1 - t0) * 0.06, (10000 - (t1 - t0)) / 2, 500);
  t0 -= padding;
  t1 += padding;
  const y = valueAxis(Math.max(...points.map((p) => p.y)), { integer: true });
  const px = (t) => m.l + ((t - t0) / (t1 - t0)) * (width - m.l - m.r);
  const py = (v) => height - m.b - (v / y.top) * (height - m.t - m.b);
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img', 'aria-label': yLabel });
  for (const v of y.ticks) {
    chart.append(svg('line', { x1: m.l, x2: width - m.r, y1: py(v), y2: py(v), class: v === 0 ? 'axis' : 'grid' }));
    chart.append(svg('text', { x: m.l - 8, y: py(v) + 4, class: 'tick', 'text-anchor': 'end' }, String(v)));
  }
  for (const { t, label } of timeTicks(t0, t1, Math.max(3, Math.floor(width / 150)))) {
    chart.append(svg('line', { x1: px(t), x2: px(t), y1: height - m.b, y2: height - m.b + 4, class: 'axis' }));
    chart.append(svg('text', { x: px(t), y: height - m.b + 17, class: 'tick', 'text-anchor': 'middle' }, label));
  }
  chart.append(svg('text', { x: 12, y: m.t + (height - m.t - m.b) / 2, class: 'axis-label', 'text-anchor': 'middle', transform: `rotate(-90 12 ${m.t + (height - m.t - m.b) / 2})` }, yLabel));
  for (const s of series) {
    const sorted = [...s.points].sort((a, b) => a.t - b.t);
    if (s.line !== false && sorted.length > 1) {
      chart.append(svg('polyline', { points: sorted.map((p) => `${px(p.t).toFixed(1)},${py(p.y).toFixed(1)}`).join(' '), class: `series-line ${s.cls}` }));
    }
    for (const p of sorted) {
      const x = px(p.t);
      const yy = py(p.y);
      const mark =
        s.shape === 'diamond'
          ? svg('path', { d: `M${x} ${yy - 6}L${x + 6} ${yy}L${x} ${yy + 6}L${x - 6} ${yy}Z`, class: `series-mark ${s.cls}` })
          : svg('circle', { cx: x, cy: yy, r: 4, class: `series-mark ${s.cls}` });
      mark.append(svg('title', {}, p.title));
      chart.append(mark);
    }
  }
  return chart;
}

/** A value axis in seconds whose ticks fall on round durations (15 s, 5 min, 1 h…). */
function durationAxis(max, count = 5) {
  const step = max < 1 ? niceStep(max / count) : TIME_STEPS.map((ms) => ms / 1000).find((s) => max / s <= count) || niceStep(max / count);
  const top = Math.max(step, Math.ceil(max / step) * step);
  const ticks = [];
  for (let v = 0; v <= top + step / 2; v += step) ticks.push(v);
  return { top, ticks };
}

/** Horizontal bars: rows are [{label, value, cls, title}], values in seconds. */
function durationChart(rows, { width = 1080 } = {}) {
  const m = { l: 200, r: 90, t: 8, b: 28 };
  const rowHeight = 26;
  const height = m.t + rows.length * rowHeight + m.b;
  const axis = durationAxis(Math.max(...rows.map((r) => r.value), 0.001));
  const px = (v) => m.l + (v / axis.top) * (width - m.l - m.r);
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img', 'aria-label': 'job durations' });
  for (const v of axis.ticks) {
    chart.append(svg('line', { x1: px(v), x2: px(v), y1: m.t, y2: height - m.b, class: v === 0 ? 'axis' : 'grid' }));
    chart.append(svg('text', { x: px(v), y: height - m.b + 17, class: 'tick', 'text-anchor': 'middle' }, v === 0 ? '0' : formatDuration(v)));
  }
  rows.forEach((row, i) => {
    const top = m.t + i * rowHeight;
    const label = row.label.length > 28 ? `${row.label.slice(0, 27)}…` : row.label;
    chart.append(svg('text', { x: m.l - 10, y: top + rowHeight / 2 + 4, class: 'bar-label', 'text-anchor': 'end' }, label));
    const bar = svg('rect', { x: m.l, y: top + 4, width: Math.max(2, px(row.value) - m.l), height: rowHeight - 8, rx: 3, class: `bar ${row.cls}` });
    bar.append(svg('title', {}, row.title));
    chart.append(bar);
    chart.append(svg('text', { x: px(row.value) + 6, y: top + rowHeight / 2 + 4, class: 'tick', 'text-anchor': 'start' }, formatDuration(row.value)));
  });
  return chart;
}

function legend(items) {
  return h('div', { class: 'legend' }, items.map(([cls, label]) => h('span', { class: 'legend-item' }, h('span', { class: `legend-swatch ${cls}` }), label)));
}

/** A short label for a number on an axis whose ticks are `step` apart. */
function tickLabel(v, step) {
  const digits = Math.max(0, Math.min(6, -Math.floor(Math.log10(step))));
  return Number(v.toFixed(digits)).toString();
}

/**
 * One feature's baseline against its recent values (a FeatureDistribution of the API): per bin,
 * the share of each side's rows as two bars side by side, and below the axis each side's
 * quantiles as a box (p25–p75, p50 marked) with whiskers (p5–p95). Shares, not counts, so a
 * 50-row baseline and 1000 recent rows compare.
 */
function histogramChart(dist, { width = 540, height = 250 } = {}) {
  const m = { l: 48, r: 14, t: 12, b: 84 };
  const edges = dist.edges;
  const sides = [
    ['baseline', 'side-baseline', dist.baseline],
    ['recent', 'side-recent', dist.recent],
  ];
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart histogram', role: 'img', 'aria-label': `${dist.feature}: baseline against recent values`, 'data-feature': dist.feature });
  if (edges.length < 2) {
    chart.append(svg('text', { x: width / 2, y: height / 2, class: 'tick', 'text-anchor': 'middle' }, 'no values'));
    return chart;
  }
  const x0 = edges[0];
  const x1 = edges[edges.length - 1];
  const px = (v) => m.l + ((v - x0) / (x1 - x0)) * (width - m.l - m.r);
  const plotBottom = height - m.b;
  const share = (side, i) => (side.count ? side.counts[i] / side.count : 0);
  const top = Math.max(...sides.flatMap(([, , side]) => side.counts.map((_, i) => share(side, i))), 0.01);
  const y = valueAxis(top * 100);
  const py = (pct) => plotBottom - (pct / y.top) * (plotBottom - m.t);
  for (const v of y.ticks) {
    chart.append(svg('line', { x1: m.l, x2: width - m.r, y1: py(v), y2: py(v), class: v === 0 ? 'axis' : 'grid' }));
    chart.append(svg('text', { x: m.l - 8, y: py(v) + 4, class: 'tick', 'text-anchor': 'end' }, `${tickLabel(v, y.ticks[1] - y.ticks[0] || 1)}%`));
  }
  chart.append(svg('text', { x: 12, y: m.t + (plotBottom - m.t) / 2, class: 'axis-label', 'text-anchor': 'middle', transform: `rotate(-90 12 ${m.t + (plotBottom - m.t) / 2})` }, 'share of rows'));
  // Value ticks on round numbers.
  const step = niceStep((x1 - x0) / Math.max(3, Math.floor(width / 110)));
  for (let v = Math.ceil(x0 / step) * step; v <= x1 + step * 1e-9; v += step) {
    chart.append(svg('line', { x1: px(v), x2: px(v), y1: plotBottom, y2: plotBottom + 4, class: 'axis' }));
    chart.append(svg('text', { x: px(v), y: plotBottom + 16, class: 'tick', 'text-anchor': 'middle' }, tickLabel(v, step)));
  }
  for (let i = 0; i < edges.length - 1; i++) {
    const left = px(edges[i]);
    const right = px(edges[i + 1]);
    const half = Math.max(1, (right - left - 2) / 2);
    const range = `[${tickLabel(edges[i], (x1 - x0) / 100)}, ${tickLabel(edges[i + 1], (x1 - x0) / 100)}${i === edges.length - 2 ? ']' : ')'}`;
    sides.forEach(([name, cls, side], k) => {
      const pct = share(side, i) * 100;
      if (!side.counts[i]) return;
      const bar = svg('rect', { x: left + 1 + k * half, y: py(pct), width: half, height: Math.max(1, plotBottom - py(pct)), class: `bar ${cls}` });
      bar.append(svg('title', {}, `${dist.feature} ${range}: ${name} ${side.counts[i]} of ${side.count} rows (${pct.toFixed(1)}%)`));
      chart.append(bar);
    });
  }
  // The quantile boxes, one row per side.
  sides.forEach(([name, cls, side], k) => {
    const row = plotBottom + 34 + k * 22;
    chart.append(svg('text', { x: m.l - 8, y: row + 4, class: 'tick', 'text-anchor': 'end' }, name));
    const q = side.quantiles;
    if (q.p50 === null || q.p50 === undefined) {
      chart.append(svg('text', { x: m.l + 4, y: row + 4, class: 'tick muted-text' }, 'no values yet'));
      return;
    }
    const group = svg('g', { class: `quantiles ${cls}` });
    group.append(svg('title', {}, `${dist.feature} ${name}: p5 ${tickLabel(q.p5, 0.001)}, p25 ${tickLabel(q.p25, 0.001)}, median ${tickLabel(q.p50, 0.001)}, p75 ${tickLabel(q.p75, 0.001)}, p95 ${tickLabel(q.p95, 0.001)} (${side.count} rows)`));
    group.append(svg('line', { x1: px(q.p5), x2: px(q.p95), y1: row, y2: row, class: 'whisker' }));
    for (const v of [q.p5, q.p95]) group.append(svg('line', { x1: px(v), x2: px(v), y1: row - 4, y2: row + 4, class: 'whisker' }));
    group.append(svg('rect', { x: px(q.p25), y: row - 7, width: Math.max(2, px(q.p75) - px(q.p25)), height: 14, rx: 2, class: 'box' }));
    group.append(svg('line', { x1: px(q.p50), x2: px(q.p50), y1: row - 7, y2: row + 7, class: 'median' }));
    chart.append(group);
  });
  return chart;
}
