// The tasks of one user, kept current by the event stream: no reload, no polling.
// Settings come from the form, or from the page's fragment (#api=...&user=...&token=...),
// which browsers never send to a server.
"use strict";

const form = document.getElementById("connect");
const statusLine = document.getElementById("status");
const list = document.getElementById("tasks");
const shown = new Map(); // task id -> <li>

function say(text) {
  statusLine.textContent = text;
}

async function call(settings, method, path) {
  const response = await fetch(`${settings.api}/api/${encodeURIComponent(settings.user)}${path}`, {
    method,
    headers: { Authorization: `Bearer ${settings.token}` },
  });
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status}`);
  return response.status === 204 ? null : response.json();
}

function show(task) {
  let item = shown.get(task.id);
  if (!item) {
    item = document.createElement("li");
    shown.set(task.id, item);
    list.prepend(item);
  }
  item.textContent = task.title + (task.completed ? " (done)" : "");
  item.className = "fresh";
}

function forget(id) {
  shown.get(id)?.remove();
  shown.delete(id);
}

async function onChange(settings, change) {
  if (change.entity !== "task") return;
  if (change.op === "delete") return forget(change.id);
  show(await call(settings, "GET", `/tasks/${change.id}`));
}

// A ticket opens one stream, once: after a drop, ask for a new ticket and resume from
// the last event with `since` (what Last-Event-ID does for a plain EventSource).
async function listen(settings, since) {
  const { ticket } = await call(settings, "POST", "/events/ticket");
  const query = new URLSearchParams({ ticket });
  if (since) query.set("since", since);
  const source = new EventSource(
    `${settings.api}/api/${encodeURIComponent(settings.user)}/events?${query}`,
  );
  let last = since;
  source.onopen = () => say("live");
  source.addEventListener("change", (event) => {
    last = event.lastEventId;
    onChange(settings, JSON.parse(event.data)).catch((error) => say(String(error)));
  });
  source.addEventListener("reset", () => {
    source.close();
    start(settings).catch((error) => say(String(error)));
  });
  source.onerror = () => {
    source.close();
    say("reconnecting");
    setTimeout(() => listen(settings, last).catch((error) => say(String(error))), 1000);
  };
}

// The stream first, then the list: a change made while the list loads still arrives.
async function start(settings) {
  say("loading");
  list.replaceChildren();
  shown.clear();
  await listen(settings, null);
  const page = await call(settings, "GET", "/tasks?limit=100");
  for (const task of page.items.reverse()) if (!shown.has(task.id)) show(task);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const settings = Object.fromEntries(new FormData(form));
  start(settings).catch((error) => say(String(error)));
});

const fromFragment = Object.fromEntries(new URLSearchParams(location.hash.slice(1)));
if (fromFragment.api && fromFragment.user && fromFragment.token) {
  for (const [name, value] of Object.entries(fromFragment)) form.elements[name].value = value;
  start(fromFragment).catch((error) => say(String(error)));
}
