// The console's entry point: a hash router that swaps one view at a time.

import { currentUser, onSessionChange, signOut } from "./api.js";
import { h } from "./dom.js";
import * as auth from "./views/auth.js";
import * as chat from "./views/chat.js";
import * as keys from "./views/keys.js";
import * as settings from "./views/settings.js";
import * as usage from "./views/usage.js";

const VIEWS = { signin: auth.signIn, signup: auth.signUp, chat: chat.render, keys: keys.render, usage: usage.render, settings: settings.render };
const PUBLIC = new Set(["signin", "signup"]);

const root = document.getElementById("view");
const nav = document.querySelector(".nav");
let cleanup = null;
let pendingNotice = null;

function route() {
  const [name = "chat", ...params] = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean);
  const view = VIEWS[name] ? name : "chat";
  const signedIn = Boolean(currentUser());
  if (!signedIn && !PUBLIC.has(view)) return go("signin");
  if (signedIn && PUBLIC.has(view)) return go("chat");
  nav.hidden = !signedIn;
  for (const link of nav.querySelectorAll("a")) link.classList.toggle("active", link.dataset.view === view);
  cleanup?.();
  root.replaceChildren();
  if (pendingNotice) root.append(h("p", { class: "notice error" }, pendingNotice));
  pendingNotice = null;
  cleanup = VIEWS[view](root, params) ?? null;
}

function go(name) {
  if (location.hash === `#/${name}`) route();
  else location.hash = `#/${name}`;
}

onSessionChange((session, reason) => {
  if (session) return;
  if (reason === "expired") pendingNotice = "Your session has ended. Please sign in again.";
  go("signin");
});
nav.querySelector("[data-action=sign-out]").addEventListener("click", () => signOut());
window.addEventListener("hashchange", route);
route();
