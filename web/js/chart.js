// A daily stacked bar chart drawn as inline SVG (no chart library, no CDN).

import { formatNumber, h } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 640;
const HEIGHT = 170;
const PAD = { top: 12, right: 8, bottom: 24, left: 48 };

function svg(tag, attrs = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, value);
  element.append(...children);
  return element;
}

const shortDate = (iso) => new Date(`${iso}T00:00:00`).toLocaleDateString(undefined, { month: "short", day: "numeric" });

/**
 * `days`: [{date, ...}]; `series`: [{key, label, className}] stacked bottom-up.
 * Each bar has a tooltip and `data-date`/`data-total` for assistive reading.
 */
export function barChart({ title, days, series, unit }) {
  const totals = days.map((day) => series.reduce((sum, s) => sum + day[s.key], 0));
  const top = Math.max(...totals, 1);
  const plotWidth = WIDTH - PAD.left - PAD.right;
  const plotHeight = HEIGHT - PAD.top - PAD.bottom;
  const step = plotWidth / days.length;
  const scale = (value) => (value / top) * plotHeight;
  const baseline = PAD.top + plotHeight;

  const chart = svg(
    "svg",
    { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": title, class: "chart" },
    svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: baseline, y2: baseline, class: "axis" }),
    svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: PAD.top, y2: PAD.top, class: "grid" }),
    svg("text", { x: PAD.left - 6, y: PAD.top + 4, class: "label end" }, formatNumber(top)),
    svg("text", { x: PAD.left - 6, y: baseline, class: "label end" }, "0"),
  );
  days.forEach((day, index) => {
    const group = svg("g", { class: "bar", "data-date": day.date, "data-total": totals[index] });
    group.append(svg("title", {}, `${shortDate(day.date)}: ${series.map((s) => `${formatNumber(day[s.key])} ${s.label}`).join(", ")}`));
    // A full-height hit area so empty days still show their tooltip.
    group.append(svg("rect", { x: PAD.left + index * step, y: PAD.top, width: step, height: plotHeight, class: "hit" }));
    let y = baseline;
    for (const s of series) {
      const height = scale(day[s.key]);
      if (height <= 0) continue;
      y -= height;
      group.append(svg("rect", { x: PAD.left + index * step + step * 0.15, y, width: step * 0.7, height, class: s.className }));
    }
    chart.append(group);
  });
  for (const index of new Set([0, Math.floor(days.length / 2), days.length - 1])) {
    const anchor = index === 0 ? "start" : index === days.length - 1 ? "end" : "middle";
    const x = anchor === "start" ? PAD.left : anchor === "end" ? WIDTH - PAD.right : PAD.left + (index + 0.5) * step;
    chart.append(svg("text", { x, y: HEIGHT - 6, class: `label ${anchor}` }, shortDate(days[index].date)));
  }
  const legend = h("ul", { class: "legend" }, ...series.map((s) => h("li", {}, h("span", { class: `swatch ${s.className}` }), s.label)));
  return h("figure", { class: "chart-figure" }, h("figcaption", {}, title, h("small", { class: "muted" }, ` (${unit})`)), chart, legend);
}
