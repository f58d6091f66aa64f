// Chat: the conversation list, a conversation's history ("load older"), and a
// composer whose reply streams over SSE, can be stopped, and resumes after a reload.
// Images are attached with a button, by pasting or by dropping them on the composer;
// the thread shows them as thumbnails that open full size. An <img src> cannot send
// the bearer token, so images are fetched with it and shown through object URLs.

import { ApiError, api } from "../api.js";
import { h, loading, notice } from "../dom.js";
import { readEvents } from "../sse.js";

// Per conversation, the reply being streamed: {generation_id, last_event_id, text}.
// sessionStorage keeps it across a reload of this tab, which is what resuming needs.
const RUNNING_KEY = "switchboard.running";
const PAGE_SIZE = 50;
const TITLE_POLLS = 30;
const RECONNECTS = 3;
const TERMINAL = new Set(["done", "error", "cancelled"]);
const UNTITLED = "New conversation";
const IMAGE_TYPES = ["image/png", "image/jpeg", "image/webp", "image/gif"];
const MAX_ATTACHMENTS = 8;

function runningReplies() {
  return JSON.parse(sessionStorage.getItem(RUNNING_KEY) ?? "{}");
}

function rememberReply(conversationId, entry) {
  const all = runningReplies();
  if (entry) all[conversationId] = entry;
  else delete all[conversationId];
  sessionStorage.setItem(RUNNING_KEY, JSON.stringify(all));
}

function pause(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    });
  });
}

// Object URLs of fetched images, by attachment id, for the page's lifetime: a thumbnail
// and its full-size view share one download.
const imageUrls = new Map();

function imageUrl(id) {
  if (!imageUrls.has(id)) {
    const loaded = api("GET", `/v1/attachments/${id}`, undefined, { raw: true })
      .then((response) => response.blob())
      .then((blob) => URL.createObjectURL(blob));
    loaded.catch(() => imageUrls.delete(id));
    imageUrls.set(id, loaded);
  }
  return imageUrls.get(id);
}

function showFullSize(src) {
  const image = h("img", { src, alt: "Attached image" });
  const dialog = h("dialog", { class: "image-viewer", onclose: () => dialog.remove() }, image);
  dialog.addEventListener("click", () => dialog.close());
  document.body.append(dialog);
  dialog.showModal();
}

// A thumbnail: `src` when the image is local (just attached), else fetched by id.
function thumbnail({ id, src }) {
  const image = h("img", { class: "thumbnail", alt: "Attached image", "data-attachment": id ?? "" });
  const opener = h("button", { type: "button", class: "thumbnail-button", title: "Open full size" }, image);
  const shown = src ? Promise.resolve(src) : imageUrl(id);
  shown.then((url) => {
    image.src = url;
  }, () => opener.classList.add("broken"));
  opener.addEventListener("click", () => shown.then(showFullSize, () => {}));
  return opener;
}

function messageView({ id, role, content, status, attachments = [] }) {
  const note = { cancelled: "Stopped", failed: "Failed", partial: "Incomplete" }[status];
  return h(
    "article",
    { class: `message ${role} ${status ?? ""}`, "data-id": id },
    h("div", { class: "role" }, role === "user" ? "You" : "Assistant", note && h("span", { class: "tag" }, note)),
    attachments.length > 0 && h("div", { class: "attachments" }, attachments.map(thumbnail)),
    h("div", { class: "content" }, content),
  );
}

export function render(root, [routeId]) {
  const controller = new AbortController();
  const { signal } = controller;
  // `#/chat/new` is the composer on its own (phones show the list at `#/chat`).
  let conversationId = routeId && routeId !== "new" ? routeId : null;
  let oldestId = null;
  let generationId = null;

  const list = h("ul", { class: "conversations" }, h("li", {}, loading()));
  const listStatus = notice();
  const title = h("h2", { class: "conversation-title" }, UNTITLED);
  const older = h("button", { type: "button", class: "older", hidden: true }, "Load older messages");
  const messages = h("div", { class: "messages" });
  const scroller = h("div", { class: "scroll" }, older, messages);
  const status = notice();
  const input = h("textarea", { name: "content", rows: 3, placeholder: "Send a message… (Enter to send, Shift+Enter for a new line)" });
  const send = h("button", { type: "submit", class: "primary" }, "Send");
  const stop = h("button", { type: "button", class: "danger", hidden: true }, "Stop");
  // Images waiting to go with the next message: {id, src (a local object URL)}.
  let pending = [];
  const tray = h("div", { class: "attachments pending", hidden: true });
  const picker = h("input", { type: "file", accept: IMAGE_TYPES.join(","), multiple: true, hidden: true, name: "attach" });
  const attach = h("button", { type: "button", class: "attach", title: "Attach images" }, "Attach image");
  const composer = h(
    "form",
    { class: "composer" },
    tray,
    input,
    h("div", { class: "composer-actions" }, picker, attach, stop, send),
  );
  const layout = h(
    "div",
    { class: `chat${routeId ? " has-conversation" : ""}` },
    h("aside", { class: "sidebar" }, h("a", { class: "button primary", href: "#/chat/new" }, "New chat"), listStatus, list),
    h("section", { class: "thread" }, h("header", {}, h("a", { href: "#/chat", class: "back" }, "← Chats"), title), scroller, status, composer),
  );
  root.append(layout);

  const aborted = (error) => signal.aborted || error?.name === "AbortError";
  const report = (target) => (error) => aborted(error) || target.show(error);
  const nearEnd = () => scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
  const toEnd = () => {
    scroller.scrollTop = scroller.scrollHeight;
  };

  function setStreaming(on) {
    send.hidden = on;
    stop.hidden = !on;
    stop.disabled = false;
  }

  async function loadList() {
    const page = await api("GET", "/v1/conversations?limit=50", undefined, { signal });
    list.replaceChildren(
      ...page.items.map((item) =>
        h("li", {}, h("a", { href: `#/chat/${item.id}`, class: item.id === conversationId ? "active" : "" }, item.title || UNTITLED)),
      ),
    );
    if (!page.items.length) list.append(h("li", { class: "muted" }, "No conversations yet."));
    listStatus.clear();
    return page.items;
  }

  // The title job names a new conversation shortly after its first reply.
  async function awaitTitle(id) {
    for (let poll = 0; poll < TITLE_POLLS; poll++) {
      await pause(1000, signal);
      const named = (await loadList()).find((item) => item.id === id)?.title;
      if (named) {
        if (id === conversationId) title.textContent = named;
        return;
      }
    }
  }

  async function openConversation() {
    messages.replaceChildren(loading("Loading messages…"));
    const detail = await api("GET", `/v1/conversations/${conversationId}?limit=${PAGE_SIZE}`, undefined, { signal });
    title.textContent = detail.title || UNTITLED;
    messages.replaceChildren(...detail.messages.map(messageView));
    oldestId = detail.messages[0]?.id ?? null;
    older.hidden = !detail.has_more;
    toEnd();
    await resume();
  }

  async function loadOlder() {
    older.disabled = true;
    older.textContent = "Loading…";
    try {
      const detail = await api("GET", `/v1/conversations/${conversationId}?limit=${PAGE_SIZE}&before_id=${oldestId}`, undefined, { signal });
      const fromBottom = scroller.scrollHeight - scroller.scrollTop;
      messages.prepend(...detail.messages.map(messageView));
      scroller.scrollTop = scroller.scrollHeight - fromBottom;
      oldestId = detail.messages[0]?.id ?? oldestId;
      older.hidden = !detail.has_more;
    } catch (error) {
      report(status)(error);
    } finally {
      older.disabled = false;
      older.textContent = "Load older messages";
    }
  }

  // Applies one stream's events to the reply's bubble; true once the reply is over.
  async function consume(response, reply, bubble, conversation) {
    const content = bubble.querySelector(".content");
    for await (const event of readEvents(response)) {
      if (event.event === "start") reply.generation_id = event.data.generation_id;
      if (event.event === "delta") {
        const follow = nearEnd();
        reply.text += event.data.content;
        content.textContent = reply.text;
        if (follow) toEnd();
      }
      generationId = reply.generation_id;
      reply.last_event_id = event.id ?? reply.last_event_id;
      if (!TERMINAL.has(event.event)) {
        rememberReply(conversation, reply);
        continue;
      }
      rememberReply(conversation, null);
      const message = event.data.message;
      if (event.event === "error") {
        bubble.classList.replace("streaming", "failed");
        status.show(event.data.message);
      } else if (message && messages.querySelector(`[data-id="${message.id}"]`)) {
        bubble.remove();
      } else if (message) {
        bubble.replaceWith(messageView(message));
      } else {
        bubble.replaceWith(messageView({ role: "assistant", content: reply.text, status: "cancelled" }));
      }
      return true;
    }
    return false;
  }

  // Follows a reply to its end, reconnecting with Last-Event-ID when the connection drops.
  async function stream(conversation, reply, bubble, response) {
    setStreaming(true);
    try {
      for (let attempt = 0; attempt <= RECONNECTS; attempt++) {
        if (attempt > 0 && !reply.generation_id) break;
        response ??= await api("GET", `/v1/generations/${reply.generation_id}/stream`, undefined, {
          raw: true,
          signal,
          headers: reply.last_event_id ? { "Last-Event-ID": reply.last_event_id } : {},
        });
        if (await consume(response, reply, bubble, conversation)) return;
        response = null;
      }
      status.show("The connection to the reply was lost. Reload the page to pick it up again.");
    } finally {
      generationId = null;
      if (!signal.aborted) setStreaming(false);
    }
  }

  function streamingBubble(text) {
    const bubble = messageView({ role: "assistant", content: text, status: "streaming" });
    messages.append(bubble);
    toEnd();
    return bubble;
  }

  async function resume() {
    const reply = runningReplies()[conversationId];
    if (!reply) return;
    try {
      const generation = await api("GET", `/v1/generations/${reply.generation_id}`, undefined, { signal });
      if (!["queued", "running"].includes(generation.status)) {
        // It ended while this page was away: the history has (or is about to get) its message.
        rememberReply(conversationId, null);
        return await openConversation();
      }
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return rememberReply(conversationId, null);
      throw error;
    }
    await stream(conversationId, reply, streamingBubble(reply.text), null);
  }

  function showPending() {
    tray.replaceChildren(
      ...pending.map((item) =>
        h(
          "span",
          { class: "pending-image" },
          thumbnail(item),
          h("button", { type: "button", class: "remove", title: "Remove", onclick: () => unattach(item) }, "×"),
        ),
      ),
    );
    tray.hidden = pending.length === 0;
  }

  function unattach(item) {
    pending = pending.filter((other) => other !== item);
    URL.revokeObjectURL(item.src);
    showPending();
    // Never sent: the server's sweep removes the upload after a day.
  }

  async function attachFiles(files) {
    const images = [...files].filter((file) => IMAGE_TYPES.includes(file.type));
    if (!images.length) return;
    status.clear();
    for (const file of images) {
      if (pending.length >= MAX_ATTACHMENTS) {
        status.show(`At most ${MAX_ATTACHMENTS} images per message.`);
        break;
      }
      const form = new FormData();
      form.append("file", file);
      try {
        const uploaded = await api("POST", "/v1/attachments", form, { signal });
        pending.push({ id: uploaded.id, src: URL.createObjectURL(file) });
        showPending();
      } catch (error) {
        report(status)(error);
      }
    }
  }

  async function submit() {
    const content = input.value.trim();
    if (!content || generationId) return;
    const images = pending;
    status.clear();
    send.disabled = true;
    try {
      if (!conversationId) {
        conversationId = (await api("POST", "/v1/conversations", {}, { signal })).id;
        // No hashchange: this view keeps running and only the address follows.
        history.replaceState(null, "", `#/chat/${conversationId}`);
        layout.classList.add("has-conversation");
        messages.replaceChildren();
        loadList().catch(report(listStatus));
      }
      const conversation = conversationId;
      const sent = messageView({ role: "user", content, status: "complete", attachments: images });
      messages.append(sent);
      toEnd();
      let response;
      try {
        const body = images.length ? { content, attachments: images.map((item) => item.id) } : { content };
        response = await api("POST", `/v1/conversations/${conversation}/chat/stream`, body, { raw: true, signal });
      } catch (error) {
        sent.remove();
        throw error;
      }
      input.value = "";
      pending = [];
      showPending();
      send.disabled = false;
      const untitled = title.textContent === UNTITLED;
      await stream(conversation, { generation_id: null, last_event_id: null, text: "" }, streamingBubble(""), response);
      if (untitled) await awaitTitle(conversation);
    } catch (error) {
      report(status)(error);
    } finally {
      send.disabled = false;
    }
  }

  async function cancel() {
    if (!generationId) return;
    stop.disabled = true;
    try {
      await api("POST", `/v1/generations/${generationId}/cancel`, undefined, { signal });
    } catch (error) {
      stop.disabled = false;
      report(status)(error);
    }
  }

  attach.addEventListener("click", () => picker.click());
  picker.addEventListener("change", () => {
    attachFiles(picker.files);
    picker.value = "";
  });
  input.addEventListener("paste", (event) => {
    const files = [...(event.clipboardData?.files ?? [])];
    if (files.some((file) => IMAGE_TYPES.includes(file.type))) {
      event.preventDefault();
      attachFiles(files);
    }
  });
  composer.addEventListener("dragover", (event) => {
    if ([...event.dataTransfer.types].includes("Files")) event.preventDefault();
  });
  composer.addEventListener("drop", (event) => {
    event.preventDefault();
    attachFiles(event.dataTransfer.files);
  });
  older.addEventListener("click", loadOlder);
  stop.addEventListener("click", cancel);
  composer.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      composer.requestSubmit();
    }
  });

  loadList().catch(report(listStatus));
  if (conversationId) openConversation().catch(report(status));
  else messages.replaceChildren(h("p", { class: "muted empty" }, "Start a conversation: type a message below."));
  input.focus();
  return () => controller.abort();
}
