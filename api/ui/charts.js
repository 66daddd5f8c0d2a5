// Line charts drawn as SVG: no library. Each series is {name, color, points: [[x, y], ...]}.

const SVG = "http://www.w3.org/2000/svg";
export const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#be185d", "#4b5563"];
const SIZE = { width: 640, height: 260, left: 56, right: 16, top: 12, bottom: 32 };

function el(name, attributes = {}, parent = null) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (parent) parent.appendChild(node);
  return node;
}

function niceStep(span, count) {
  const raw = span / Math.max(count, 1);
  const power = 10 ** Math.floor(Math.log10(raw));
  const fraction = raw / power;
  return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * power;
}

function linearTicks(low, high, count) {
  if (low === high) return [low];
  const step = niceStep(high - low, count);
  const ticks = [];
  for (let tick = Math.ceil(low / step) * step; tick <= high + step * 1e-9; tick += step) ticks.push(tick);
  return ticks;
}

function logTicks(low, high) {
  const ticks = [];
  for (let power = Math.floor(Math.log10(low)); power <= Math.ceil(Math.log10(high)); power++) {
    for (const m of high / low < 100 ? [1, 2, 5] : [1]) {
      const tick = m * 10 ** power;
      if (tick >= low && tick <= high) ticks.push(tick);
    }
  }
  // Less than a decade: the round numbers of a linear scale, placed on the log scale.
  return ticks.length >= 3 ? ticks : linearTicks(low, high, 5).filter((tick) => tick > 0);
}

export function formatNumber(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const size = Math.abs(value);
  if (size !== 0 && (size < 1e-3 || size >= 1e5)) return value.toExponential(2);
  return String(Number(value.toPrecision(4)));
}

// Draws into `container` (replacing what it held). Points with y <= 0 are left out on a log scale.
export function lineChart(container, series, { logY = false, xLabel = "step", empty = "No points yet" } = {}) {
  container.replaceChildren();
  const shown = series.map((s) => ({ ...s, points: s.points.filter(([, y]) => Number.isFinite(y) && (!logY || y > 0)) }));
  const all = shown.flatMap((s) => s.points);
  const svg = el("svg", { viewBox: `0 0 ${SIZE.width} ${SIZE.height}`, class: "chart", role: "img" });
  container.appendChild(svg);
  if (!all.length) {
    el("text", { x: SIZE.width / 2, y: SIZE.height / 2, "text-anchor": "middle", class: "chart-empty" }, svg).textContent = empty;
    return svg;
  }
  let [xLow, xHigh] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [yLow, yHigh] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (xLow === xHigh) { xLow -= 1; xHigh += 1; }
  if (yLow === yHigh) { const pad = Math.abs(yLow) * 0.1 || 1; yLow -= pad; yHigh += logY ? 0 : pad; if (logY) yLow = yHigh / 2; }
  else if (!logY) { const pad = (yHigh - yLow) * 0.05; yLow -= pad; yHigh += pad; }
  const plotWidth = SIZE.width - SIZE.left - SIZE.right, plotHeight = SIZE.height - SIZE.top - SIZE.bottom;
  const x = (v) => SIZE.left + ((v - xLow) / (xHigh - xLow)) * plotWidth;
  const y = logY
    ? (v) => SIZE.top + (1 - (Math.log10(v) - Math.log10(yLow)) / (Math.log10(yHigh) - Math.log10(yLow))) * plotHeight
    : (v) => SIZE.top + (1 - (v - yLow) / (yHigh - yLow)) * plotHeight;

  const grid = el("g", { class: "grid" }, svg);
  for (const tick of logY ? logTicks(yLow, yHigh) : linearTicks(yLow, yHigh, 5)) {
    el("line", { x1: SIZE.left, x2: SIZE.width - SIZE.right, y1: y(tick), y2: y(tick) }, grid);
    el("text", { x: SIZE.left - 6, y: y(tick) + 4, "text-anchor": "end" }, grid).textContent = formatNumber(tick);
  }
  for (const tick of linearTicks(xLow, xHigh, 6).filter((t) => Number.isInteger(t) || xHigh - xLow < 6)) {
    el("line", { x1: x(tick), x2: x(tick), y1: SIZE.top, y2: SIZE.top + plotHeight, class: "vertical" }, grid);
    el("text", { x: x(tick), y: SIZE.height - SIZE.bottom + 16, "text-anchor": "middle" }, grid).textContent = formatNumber(tick);
  }
  el("text", { x: SIZE.width - SIZE.right, y: SIZE.height - 4, "text-anchor": "end", class: "axis-label" }, svg).textContent = xLabel;
  el("rect", { x: SIZE.left, y: SIZE.top, width: plotWidth, height: plotHeight, class: "frame" }, svg);

  shown.forEach((s, index) => {
    const color = s.color || COLORS[index % COLORS.length];
    const points = s.points.map(([px, py]) => `${x(px).toFixed(1)},${y(py).toFixed(1)}`).join(" ");
    el("polyline", { points, fill: "none", stroke: color, "stroke-width": 1.8, "data-series": s.name,
                     "stroke-linejoin": "round", "stroke-linecap": "round" }, svg);
    if (s.points.length <= 40) {
      for (const [px, py] of s.points) el("circle", { cx: x(px), cy: y(py), r: 2.5, fill: color }, svg);
    }
  });
  return svg;
}

// A legend of coloured names beside a chart.
export function legend(series) {
  const list = document.createElement("div");
  list.className = "legend";
  series.forEach((s, index) => {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.className = `swatch c${index % COLORS.length}`;
    item.append(swatch, s.name);
    list.appendChild(item);
  });
  return list;
}
