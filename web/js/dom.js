// Small DOM and formatting helpers shared by the views.

/** `h("button", {class: "primary", onclick}, "Save")`: an element with attributes and children. */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "value" || (name in element && typeof value !== "string")) element[name] = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  element.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return element;
}

/** An inline message area: `.show(error)` for failures, `.ok(text)` for confirmations. */
export function notice() {
  const element = h("p", { class: "notice", role: "status", hidden: true });
  element.show = (error) => {
    element.className = "notice error";
    element.textContent = error?.message ?? String(error);
    element.hidden = false;
  };
  element.ok = (text) => {
    element.className = "notice ok";
    element.textContent = text;
    element.hidden = false;
  };
  element.clear = () => {
    element.hidden = true;
  };
  return element;
}

/** Runs `task` with `button` disabled and relabelled, reporting failures on `status`. */
export async function busy(button, label, status, task) {
  const original = button.textContent;
  button.disabled = true;
  button.textContent = label;
  status?.clear();
  try {
    return await task();
  } catch (error) {
    if (!status) throw error;
    status.show(error);
  } finally {
    button.disabled = false;
    // The task may have relabelled the button for what comes next.
    if (button.textContent === label) button.textContent = original;
  }
}

export function field(label, input, hint) {
  return h("label", { class: "field" }, h("span", {}, label), input, hint && h("small", { class: "muted" }, hint));
}

export function loading(text = "Loading…") {
  return h("p", { class: "muted loading" }, text);
}

const numberFormat = new Intl.NumberFormat();
export const formatNumber = (value) => numberFormat.format(value);

export function formatDate(value, withTime = false) {
  if (!value) return "—";
  const date = new Date(value);
  return withTime ? date.toLocaleString() : date.toLocaleDateString();
}
