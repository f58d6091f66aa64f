// Usage: the plan (price, period end, redeem a code, cancel), this period's quota and the
// last 30 days of requests and tokens.

import { api } from "../api.js";
import { barChart } from "../chart.js";
import { busy, field, formatDate, formatNumber, h, loading, notice } from "../dom.js";

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

function price(subscription) {
  const amount = Number(subscription.price);
  const per = subscription.billing_cycle === "yearly" ? "year" : "month";
  return amount === 0 ? "Free" : `${amount.toLocaleString(undefined, { style: "currency", currency: subscription.currency })} / ${per}`;
}

function periodNote(subscription) {
  if (!subscription.current_period_end) return "No end: the free plan.";
  const end = formatDate(subscription.current_period_end);
  return subscription.cancel_at_period_end ? `Cancelled: ends ${end}, then free.` : `Current period ends ${end}.`;
}

function planCard(plan, subscription, reload) {
  const status = notice();
  const code = h("input", { name: "code", required: true, autocomplete: "off", spellcheck: false, placeholder: "SBR-XXXXX-…", maxlength: "100" });
  const redeem = h("button", { type: "submit", class: "primary" }, "Redeem");
  const form = h("form", { class: "redeem" }, h("h3", {}, "Redeem a code"), h("div", { class: "row wrap" }, field("Code", code), redeem));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(redeem, "Redeeming…", status, async () => {
      const granted = await api("POST", "/v1/user/redeem", { code: code.value.trim() });
      form.reset();
      const note = granted.status === "pending" ? `It starts ${formatDate(granted.current_period_start)}.` : `Now on ${granted.plan}.`;
      await reload(`Code redeemed: ${granted.plan}. ${note}`);
    });
  });
  const cancellable = subscription.source !== "default" && !subscription.cancel_at_period_end;
  const cancel = cancellable ? h("button", { type: "button", class: "danger small cancel-plan" }, "Cancel plan") : null;
  cancel?.addEventListener("click", () => {
    if (!confirm(`Cancel the ${subscription.plan} plan? It stays until ${formatDate(subscription.current_period_end)}, then you are on free.`)) return;
    busy(cancel, "Cancelling…", status, async () => {
      await api("POST", "/v1/user/subscription/cancel");
      await reload("Cancelled: the plan stays until its period ends.");
    });
  });
  return h(
    "div",
    { class: "card plan" },
    h("h2", {}, "Plan"),
    h("p", { class: "big plan-name" }, plan.plan),
    h("p", { class: "plan-price" }, price(subscription)),
    h("p", { class: "muted plan-period" }, periodNote(subscription)),
    h("dl", { class: "facts" }, h("dt", {}, "Requests per minute"), h("dd", {}, formatNumber(plan.rpm)), h("dt", {}, "API keys"), h("dd", {}, formatNumber(plan.max_api_keys)), h("dt", {}, "Models"), h("dd", {}, plan.models.join(", "))),
    cancel,
    form,
    status,
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

  async function load(message) {
    const [plan, subscription, current, history] = await Promise.all([
      api("GET", "/v1/user/plan"),
      api("GET", "/v1/user/subscription"),
      api("GET", "/v1/developer/usage/current"),
      api("GET", "/v1/developer/usage/history?days=30"),
    ]);
    const card = planCard(plan, subscription, load);
    body.replaceChildren(card, gauge(current), historyCard(history));
    if (message) card.querySelector(".notice").ok?.(message);
  }

  load().catch((error) => {
    body.replaceChildren();
    status.show(error);
  });
}
