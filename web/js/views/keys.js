// API keys: create (the full key shown once), list, revoke.

import { api } from "../api.js";
import { busy, field, formatDate, formatNumber, h, loading, notice } from "../dom.js";

function revealed(created) {
  const value = h("input", { class: "secret", readonly: true, value: created.key, "aria-label": "New API key" });
  const copied = notice();
  const copy = h("button", { type: "button", class: "primary" }, "Copy");
  copy.addEventListener("click", async () => {
    value.select();
    try {
      await navigator.clipboard.writeText(created.key);
      copied.ok("Copied to the clipboard.");
    } catch {
      copied.show(new Error("Copying is not allowed here: the key is selected, press Ctrl+C (⌘C)."));
    }
  });
  return h(
    "div",
    { class: "card new-key" },
    h("h2", {}, `Key “${created.name}” created`),
    h("p", { class: "warning" }, "Copy this key now. It is shown only once: Switchboard keeps only its hash."),
    h("div", { class: "row" }, value, copy),
    copied,
  );
}

export function render(root) {
  const status = notice();
  const tableStatus = notice();
  const reveal = h("div");
  const rows = h("tbody", {}, h("tr", {}, h("td", { colspan: 6 }, loading())));
  const name = h("input", { name: "name", required: true, maxlength: "100", placeholder: "e.g. ci-bot" });
  const expiry = h("input", { name: "expires_in_days", type: "number", min: "1", max: "3650", placeholder: "never" });
  const create = h("button", { type: "submit", class: "primary" }, "Create key");
  const form = h("form", { class: "card inline-form" }, h("h2", {}, "New API key"), h("div", { class: "row wrap" }, field("Name", name), field("Expires after (days)", expiry), create), status);

  root.append(
    h("h1", {}, "API keys"),
    h("p", { class: "muted" }, "Use a key as ", h("code", {}, "Authorization: Bearer sk-sb-…"), " with the OpenAI-compatible API at ", h("code", {}, `${location.origin}/v1`), "."),
    form,
    reveal,
    h("div", { class: "card" }, h("h2", {}, "Your keys"), tableStatus, h("div", { class: "table-wrap" }, h("table", { class: "keys" }, h("thead", {}, h("tr", {}, ...["Name", "Key", "Requests", "Last used", "Created", ""].map((label) => h("th", {}, label)))), rows))),
  );

  function row(key) {
    const revoke = h("button", { type: "button", class: "danger small" }, "Revoke");
    revoke.addEventListener("click", () => {
      if (!confirm(`Revoke the key “${key.name}”? Programs using it stop working at once.`)) return;
      busy(revoke, "Revoking…", tableStatus, async () => {
        await api("DELETE", `/v1/developer/api-keys/${key.id}`);
        await load();
      });
    });
    const expiresNote = key.is_expired ? " (expired)" : key.expires_at ? ` (expires ${formatDate(key.expires_at)})` : "";
    return h(
      "tr",
      { "data-id": key.id },
      h("td", { "data-label": "Name" }, key.name),
      h("td", { "data-label": "Key" }, h("code", {}, `${key.key_prefix}…`), expiresNote),
      h("td", { "data-label": "Requests", class: "requests" }, formatNumber(key.total_requests)),
      h("td", { "data-label": "Last used" }, key.last_used_at ? formatDate(key.last_used_at, true) : "never"),
      h("td", { "data-label": "Created" }, formatDate(key.created_at)),
      h("td", {}, revoke),
    );
  }

  async function load() {
    const keys = await api("GET", "/v1/developer/api-keys");
    rows.replaceChildren(...keys.map(row));
    if (!keys.length) rows.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No keys yet.")));
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(create, "Creating…", status, async () => {
      const body = { name: name.value.trim() };
      if (expiry.value) body.expires_in_days = Number(expiry.value);
      const created = await api("POST", "/v1/developer/api-keys", body);
      reveal.replaceChildren(revealed(created));
      form.reset();
      await load();
    });
  });

  load().catch((error) => tableStatus.show(error));
}
