// Sign in and sign up.

import { signIn as login, signUp as register } from "../api.js";
import { busy, field, h, notice } from "../dom.js";

function form(root, { title, fields, submit, working, action, footer }) {
  const status = notice();
  const button = h("button", { type: "submit", class: "primary" }, submit);
  const element = h(
    "form",
    { class: "card auth" },
    h("h1", {}, title),
    ...fields,
    status,
    button,
    h("p", { class: "muted" }, footer),
  );
  element.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(button, working, status, async () => {
      await action(new FormData(element));
      location.hash = "#/chat";
    });
  });
  root.append(element);
  element.querySelector("input").focus();
}

export function signIn(root) {
  form(root, {
    title: "Sign in",
    fields: [
      field("Email", h("input", { name: "email", type: "email", required: true, autocomplete: "email" })),
      field("Password", h("input", { name: "password", type: "password", required: true, autocomplete: "current-password" })),
    ],
    submit: "Sign in",
    working: "Signing in…",
    action: (data) => login(data.get("email"), data.get("password")),
    footer: ["No account yet? ", h("a", { href: "#/signup" }, "Create one")],
  });
}

export function signUp(root) {
  form(root, {
    title: "Create your account",
    fields: [
      field("Email", h("input", { name: "email", type: "email", required: true, autocomplete: "email" })),
      field(
        "Password",
        h("input", { name: "password", type: "password", required: true, minlength: "8", autocomplete: "new-password" }),
        "At least 8 characters.",
      ),
      field("Username (optional)", h("input", { name: "username", autocomplete: "username", pattern: "[A-Za-z0-9_.\\-]{3,50}" })),
      field("Full name (optional)", h("input", { name: "full_name", autocomplete: "name" })),
    ],
    submit: "Create account",
    working: "Creating account…",
    action: (data) =>
      register(
        Object.fromEntries([...data.entries()].filter(([, value]) => value !== "")),
      ),
    footer: ["Already have an account? ", h("a", { href: "#/signin" }, "Sign in")],
  });
}
