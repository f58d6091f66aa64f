// Settings: profile, password, the user's own model endpoints, plug-in-api account.

import { api, currentUser, updateUser } from "../api.js";
import { busy, field, formatDate, h, loading, notice } from "../dom.js";

// Empty inputs become null so that clearing a field clears it on the server.
const valueOf = (input) => input.value.trim() || null;

function profileCard() {
  const inputs = {
    username: h("input", { name: "username", required: true, pattern: "[A-Za-z0-9_.\\-]{3,50}" }),
    full_name: h("input", { name: "full_name" }),
    avatar_url: h("input", { name: "avatar_url", type: "url", placeholder: "https://…" }),
    bio: h("textarea", { name: "bio", rows: 3 }),
  };
  const status = notice();
  const signedInAs = h("p", { class: "muted" }, `Signed in as ${currentUser().email}`);
  const save = h("button", { type: "submit", class: "primary" }, "Save profile");
  // Disabled until the server's copy is in, so nothing typed is overwritten by it.
  const fields = h(
    "fieldset",
    { disabled: true },
    field("Username", inputs.username),
    field("Full name", inputs.full_name),
    field("Avatar URL", inputs.avatar_url),
    field("Bio", inputs.bio),
    save,
  );
  const form = h("form", { class: "card profile" }, h("h2", {}, "Profile"), signedInAs, status, fields);
  api("GET", "/v1/user/profile")
    .then((user) => {
      updateUser(user);
      signedInAs.textContent = `Signed in as ${user.email}`;
      for (const [name, input] of Object.entries(inputs)) input.value = user[name] ?? "";
      fields.disabled = false;
    })
    .catch((error) => status.show(error));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(save, "Saving…", status, async () => {
      const body = Object.fromEntries(Object.entries(inputs).map(([name, input]) => [name, valueOf(input)]));
      updateUser(await api("PUT", "/v1/user/profile", body));
      status.ok("Profile saved.");
    });
  });
  return form;
}

function passwordCard() {
  const current = h("input", { type: "password", required: true, autocomplete: "current-password" });
  const next = h("input", { type: "password", required: true, minlength: "8", autocomplete: "new-password" });
  const status = notice();
  const save = h("button", { type: "submit", class: "primary" }, "Change password");
  const form = h(
    "form",
    { class: "card password" },
    h("h2", {}, "Password"),
    field("Current password", current),
    field("New password", next, "At least 8 characters. Your other sessions are signed out."),
    status,
    save,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(save, "Changing…", status, async () => {
      await api("POST", "/v1/user/password", { current_password: current.value, new_password: next.value });
      form.reset();
      status.ok("Password changed. Other sessions were signed out.");
    });
  });
  return form;
}

function modelConfigsCard() {
  const status = notice();
  const rows = h("ul", { class: "model-configs" }, h("li", {}, loading()));
  const inputs = {
    name: h("input", { name: "name", maxlength: "100", placeholder: "My vLLM" }),
    base_url: h("input", { name: "base_url", type: "url", required: true, placeholder: "https://llm.example.com/v1" }),
    model: h("input", { name: "model", required: true, placeholder: "llama-3.1-70b" }),
    // Write-only: the API never returns the key, so the field starts empty every time.
    api_key: h("input", { name: "api_key", type: "password", autocomplete: "new-password" }),
  };
  const keyHint = h("small", { class: "muted" });
  const heading = h("h3", {});
  const save = h("button", { type: "submit", class: "primary" }, "");
  const cancelEdit = h("button", { type: "button" }, "Cancel");
  const form = h(
    "form",
    { class: "model-config-form" },
    heading,
    field("Name", inputs.name),
    field("Base URL", inputs.base_url),
    field("Model", inputs.model),
    h("label", { class: "field" }, h("span", {}, "API key"), inputs.api_key, keyHint),
    h("div", { class: "row" }, save, cancelEdit),
  );
  let editing = null;

  function edit(config) {
    editing = config;
    heading.textContent = config ? `Edit “${config.name}”` : "Add an endpoint";
    save.textContent = config ? "Save endpoint" : "Add endpoint";
    cancelEdit.hidden = !config;
    for (const name of ["name", "base_url", "model"]) inputs[name].value = config?.[name] ?? "";
    inputs.api_key.value = "";
    inputs.api_key.required = !config;
    inputs.api_key.placeholder = config ? `Leave empty to keep the key ending in ${config.api_key_hint}` : "sk-…";
    keyHint.textContent = "Stored encrypted; it is never shown again.";
  }

  function row(config) {
    const remove = h("button", { type: "button", class: "danger small" }, "Delete");
    remove.addEventListener("click", () => {
      if (!confirm(`Delete the endpoint “${config.name}”?`)) return;
      busy(remove, "Deleting…", status, async () => {
        await api("DELETE", `/v1/model-configs/${config.id}`);
        if (editing?.id === config.id) edit(null);
        await load();
      });
    });
    return h(
      "li",
      { "data-id": config.id },
      h("div", {}, h("strong", {}, config.name), h("div", { class: "muted" }, `${config.model} at ${config.base_url} · key …${config.api_key_hint}`)),
      h("div", { class: "row" }, h("button", { type: "button", class: "small", onclick: () => edit(config) }, "Edit"), remove),
    );
  }

  async function load() {
    const configs = await api("GET", "/v1/model-configs");
    rows.replaceChildren(...configs.map(row));
    if (!configs.length) rows.append(h("li", { class: "muted" }, "No endpoints yet."));
  }

  cancelEdit.addEventListener("click", () => edit(null));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(save, "Saving…", status, async () => {
      const body = { name: valueOf(inputs.name), base_url: inputs.base_url.value.trim(), model: inputs.model.value.trim() };
      if (inputs.api_key.value) body.api_key = inputs.api_key.value;
      if (editing) await api("PUT", `/v1/model-configs/${editing.id}`, body);
      else await api("POST", "/v1/model-configs", body);
      status.ok(editing ? "Endpoint saved." : "Endpoint added.");
      edit(null);
      await load();
    });
  });
  edit(null);
  load().catch((error) => status.show(error));
  return h(
    "div",
    { class: "card" },
    h("h2", {}, "Your model endpoints"),
    h("p", { class: "muted" }, "OpenAI-compatible endpoints of your own, usable in conversations."),
    rows,
    status,
    form,
  );
}

function pluginCard() {
  const body = h("div", {}, loading());
  const labels = { active: "Ready", pending: "Being set up…", failed: "Setup failed; it will be retried" };
  api("GET", "/v1/plugin-api/key")
    .then((account) =>
      body.replaceChildren(
        h("p", {}, h("span", { class: `badge ${account.status}` }, labels[account.status] ?? account.status)),
        h(
          "dl",
          { class: "facts" },
          h("dt", {}, "Created"),
          h("dd", {}, formatDate(account.created_at, true)),
          h("dt", {}, "Last used"),
          h("dd", {}, account.last_used_at ? formatDate(account.last_used_at, true) : "never"),
        ),
      ),
    )
    .catch((error) => {
      const status = notice();
      status.show(error);
      body.replaceChildren(status);
    });
  return h("div", { class: "card plugin" }, h("h2", {}, "Plug-in API account"), body);
}

export function render(root) {
  root.append(h("h1", {}, "Settings"), h("div", { class: "settings-grid" }, profileCard(), passwordCard(), modelConfigsCard(), pluginCard()));
}
