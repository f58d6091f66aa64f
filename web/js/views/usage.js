// Usage: the plan, this period's quota and the last 30 days of requests and tokens.

import { api } from "../api.js";
import { barChart } from "../chart.js";
import { formatDate, formatNumber, h, loading, notice } from "../dom.js";

function gauge(current) {
  const percent = Math.min(current.quota_percentage, 100);
  return h(
    "div",
    { class: "card gauge" },
    h("h2", {}, "This period"),
    h("p", { class: "big quota-used" }, `${formatNumber(current.quota_used)} / ${formatNumber(current.quota_total)} requests`),
    h(
      "div",
      { class: `meter${percent >= 90 ? " high" : ""}`, role: "meter", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(percent), "aria-label": "Quota used" },
      h("div", { class: "fill", style: `width: ${percent}%` }),
    ),
    h("p", { class: "muted" }, `${formatNumber(current.quota_remaining)} left · renews ${formatDate(current.quota_reset_at)} (in ${current.days_until_reset} day${current.days_until_reset === 1 ? "" : "s"})`),
  );
}

function planCard(plan) {
  return h(
    "div",
    { class: "card" },
    h("h2", {}, "Plan"),
    h("p", { class: "big plan-name" }, plan.plan),
    h("dl", { class: "facts" }, h("dt", {}, "Requests per minute"), h("dd", {}, formatNumber(plan.rpm)), h("dt", {}, "API keys"), h("dd", {}, formatNumber(plan.max_api_keys)), h("dt", {}, "Models"), h("dd", {}, plan.models.join(", "))),
  );
}

function historyCard(history) {
  const days = history.daily_usage.map((day) => ({ ...day, cost: Number(day.cost) }));
  const tokens = days.reduce((sum, day) => sum + day.prompt_tokens + day.completion_tokens, 0);
  return h(
    "div",
    { class: "card history" },
    h("h2", {}, "Last 30 days"),
    h(
      "dl",
      { class: "facts totals" },
      h("dt", {}, "Requests"),
      h("dd", { class: "total-requests" }, formatNumber(history.total_requests)),
      h("dt", {}, "Tokens"),
      h("dd", { class: "total-tokens" }, formatNumber(tokens)),
      h("dt", {}, "Cost"),
      h("dd", {}, `$${Number(history.total_cost).toFixed(4)}`),
    ),
    barChart({ title: "Requests per day", unit: "requests", days, series: [{ key: "requests", label: "requests", className: "s-requests" }] }),
    barChart({
      title: "Tokens per day",
      unit: "tokens",
      days,
      series: [
        { key: "prompt_tokens", label: "prompt tokens", className: "s-prompt" },
        { key: "completion_tokens", label: "completion tokens", className: "s-completion" },
      ],
    }),
  );
}

export function render(root) {
  const status = notice();
  const body = h("div", { class: "usage-grid" }, loading("Loading usage…"));
  root.append(h("h1", {}, "Usage"), status, body);
  Promise.all([
    api("GET", "/v1/user/plan"),
    api("GET", "/v1/developer/usage/current"),
    api("GET", "/v1/developer/usage/history?days=30"),
  ])
    .then(([plan, current, history]) => body.replaceChildren(planCard(plan), gauge(current), historyCard(history)))
    .catch((error) => {
      body.replaceChildren();
      status.show(error);
    });
}
