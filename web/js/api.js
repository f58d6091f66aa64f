// The HTTP client of the console: the signed-in session (kept in localStorage),
// silent token refresh, and errors carrying the API's `detail` message.

const SESSION_KEY = "switchboard.session";
// Codes that mean the access token itself is no good (as opposed to, say, a wrong
// current password, which is also a 401 but must not sign anyone out).
const SESSION_CODES = new Set(["token_expired", "token_invalid"]);

let session = readSession();
let refreshTimer = null;
let refreshing = null;
const listeners = new Set();

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function readSession() {
  try {
    return JSON.parse(localStorage.getItem(SESSION_KEY));
  } catch {
    return null;
  }
}

export function currentUser() {
  return session?.user ?? null;
}

export function onSessionChange(listener) {
  listeners.add(listener);
}

function setSession(next, reason) {
  const wasSignedIn = Boolean(session);
  session = next;
  if (next) localStorage.setItem(SESSION_KEY, JSON.stringify(next));
  else localStorage.removeItem(SESSION_KEY);
  scheduleRefresh();
  // Several requests fail together when a session ends: announce the sign-out once,
  // or a second announcement re-renders the sign-in page without its notice.
  if (!next && !wasSignedIn) return;
  for (const listener of listeners) listener(next, reason);
}

function storeTokens(pair) {
  setSession({
    access_token: pair.access_token,
    refresh_token: pair.refresh_token,
    // Refresh a minute early, or after four fifths of a short lifetime.
    refresh_at: Date.now() + pair.expires_in * 1000 - Math.min(60_000, pair.expires_in * 200),
    user: pair.user,
  });
}

export function updateUser(user) {
  if (session) setSession({ ...session, user });
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  if (session) refreshTimer = setTimeout(refresh, Math.max(session.refresh_at - Date.now(), 0));
}

// Another tab signed in, out, or rotated the tokens: follow it.
window.addEventListener("storage", (event) => {
  if (event.key !== SESSION_KEY) return;
  const next = readSession();
  const reason = next ? undefined : "signed-out";
  session = next;
  scheduleRefresh();
  for (const listener of listeners) listener(next, reason);
});

function refresh() {
  refreshing ??= withRefreshLock(rotate).finally(() => {
    refreshing = null;
  });
  return refreshing;
}

// A refresh token works once: two tabs rotating the same one would look like
// reuse and end the session, so rotation is serialised across tabs.
function withRefreshLock(task) {
  return navigator.locks ? navigator.locks.request("switchboard-refresh", task) : task();
}

async function rotate() {
  const stored = readSession();
  if (!stored) return setSession(null, "expired");
  if (stored.refresh_token !== session?.refresh_token) {
    // Another tab rotated while this one waited for the lock.
    session = stored;
    return scheduleRefresh();
  }
  try {
    storeTokens(await send("POST", "/v1/auth/refresh", { refresh_token: stored.refresh_token }));
  } catch (error) {
    if (error.status === 401) setSession(null, "expired");
    else refreshTimer = setTimeout(refresh, 10_000);
  }
}

export function errorMessage(body, status) {
  const detail = body?.detail ?? body?.error?.message;
  if (Array.isArray(detail)) {
    return detail.map((item) => `${item.loc?.slice(1).join(".") || "request"}: ${item.msg}`).join("; ");
  }
  return typeof detail === "string" ? detail : `The server answered ${status}.`;
}

async function send(method, path, body, { token, signal, headers = {}, raw = false } = {}) {
  const init = { method, signal, headers: { ...headers } };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (body instanceof FormData) {
    // The browser writes the multipart Content-Type, boundary included.
    init.body = body;
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network", "Cannot reach the server. Check your connection.");
  }
  if (!response.ok) {
    const payload = await response.json().catch(() => null);
    throw new ApiError(response.status, payload?.code ?? payload?.error?.code, errorMessage(payload, response.status));
  }
  if (raw) return response;
  return response.status === 204 ? null : response.json();
}

/** An authenticated call; `raw: true` returns the Response (for event streams and images).
 * A FormData body is sent as multipart (uploads), any other body as JSON. */
export async function api(method, path, body, options = {}) {
  if (!session) throw new ApiError(401, "token_invalid", "Please sign in.");
  if (session.refresh_at <= Date.now()) await refresh();
  if (!session) throw new ApiError(401, "token_expired", "Your session has ended. Please sign in again.");
  for (let attempt = 0; ; attempt++) {
    try {
      return await send(method, path, body, { ...options, token: session?.access_token });
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401 || !SESSION_CODES.has(error.code)) throw error;
      if (attempt === 0 && error.code === "token_expired") {
        await refresh();
        if (session) continue;
      }
      setSession(null, "expired");
      throw error;
    }
  }
}

export async function signIn(email, password) {
  storeTokens(await send("POST", "/v1/auth/login", { email, password }));
}

export async function signUp(fields) {
  storeTokens(await send("POST", "/v1/auth/register", fields));
}

export async function signOut() {
  try {
    await api("POST", "/v1/auth/logout");
  } catch {
    // The session is gone from this browser either way.
  }
  setSession(null, "signed-out");
}
