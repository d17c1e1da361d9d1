// The web console of the legacy-smtp emulator.
//
// Plain JavaScript, no framework and no build step: it talks to the control
// API of the server that served it (same origin, the API's own routes) and
// listens to its live feed, GET /events: server-sent events rather than a
// short poll, because an event stream sends only what changed, when it
// changes, and EventSource reconnects by itself (emulator/control/live.py
// says more).  Everything the server sent is put on the page as text, never
// as HTML.
"use strict";

const OUTCOMES = ["open", "delivered", "no message", "dropped", "failed"];
const MAX_ROWS = 1000;         // the server keeps the latest 1000 sessions
const MAX_LINES = 5000;        // transcript lines put on the page; the rest is in the text form
const MAX_SOURCE = 1 << 20;    // bytes of a message's source put on the page

const state = {
  sessions: new Map(),         // session id -> summary (as GET /sessions has it)
  firstSeen: new Map(),        // session id -> when this page first saw it (for the "new" mark)
  listeners: [], faults: [], messages: {count: 0, latest: null}, errors: 0, matrix: null,
  profiles: null,              // GET /profiles, fetched once
  view: "sessions", detail: null,
  filter: {text: "", persona: "", outcome: ""},
  mode: "arrows", legs: "both",
  live: false,
  loading: 0,                  // the latest detail request; older answers are dropped
  dirty: false,                // the open detail changed while it was loading
};

const $ = (id) => document.getElementById(id);

/** An element with attributes and children (text children become text nodes, never HTML). */
function h(tag, attrs, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") element.className = value;
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

/** One request to the API; rejects with the API's one-line message on an error status. */
async function api(method, path, body) {
  const init = {method, headers: {Accept: "application/json"}};
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  const json = (response.headers.get("content-type") || "").startsWith("application/json");
  const data = json ? await response.json() : await response.text();
  if (!response.ok) throw new Error(json && data.message ? data.message : `${response.status} ${response.statusText}`);
  return data;
}

/** Bytes (a string of Latin-1 characters, one per byte) escaped as the arrow form escapes them. */
function escapeBytes(bytes) {
  let out = "";
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes.charCodeAt(i);
    if (b === 0x5c) out += "\\\\";
    else if (b === 0x0d) out += "\\r";
    else if (b === 0x0a) out += "\\n";
    else if (b === 0x09) out += "\\t";
    else if (b >= 0x20 && b < 0x7f) out += bytes[i];
    else out += "\\x" + b.toString(16).padStart(2, "0");
  }
  return out;
}

/** How many lines of the arrow form a data record makes (Python's bytes.splitlines). */
function lineCount(data) {
  const parts = data.split(/\r\n|\r|\n/);
  return parts.length - (parts[parts.length - 1] === "" ? 1 : 0);
}

const pad = (n, width = 2) => String(n).padStart(width, "0");

function clock(unix) {
  const d = new Date(unix * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function when(unix) {
  const d = new Date(unix * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(unix)}`;
}

const sessionHref = (id) => "#/sessions/" + encodeURIComponent(id);
const messageHref = (name) => "#/messages/" + encodeURIComponent(name);
const apiPath = (kind, id, rest = "") => `/${kind}/${encodeURIComponent(id)}${rest}`;

function tlsText(tls) {
  if (!tls) return "";
  return [tls.version, tls.cipher].filter(Boolean).join(" ") + (tls.sni ? ` SNI ${tls.sni}` : "");
}

function authText(auth) {
  if (!auth) return "";
  const who = auth.user === null || auth.user === undefined ? "?" : auth.user;
  return `${who} (${auth.mechanism || "?"}${auth.outcome && auth.outcome !== "success" ? ", " + auth.outcome : ""})`;
}

/** A listener's id for an endpoint, if exactly one listener has it. */
function listenerName(endpoint) {
  const found = state.listeners.filter((l) => l.endpoint === endpoint);
  return found.length === 1 ? found[0].id : endpoint;
}

function setStatus() {
  const parts = [state.live ? "live" : "reconnecting…"];
  if (state.errors) parts.push(`${state.errors} server-side error${state.errors === 1 ? "" : "s"} (see the twistd log)`);
  $("status").textContent = parts.join(" · ");
  $("status").className = "status " + (state.live ? "live" : "down") + (state.errors ? " errors" : "");
}

// -- the live feed ----------------------------------------------------------

function connect() {
  const source = new EventSource("/events");
  source.addEventListener("snapshot", (event) => {
    const data = JSON.parse(event.data);
    state.sessions = new Map(data.sessions.map((s) => [s.session, s]));
    for (const id of state.sessions.keys()) if (!state.firstSeen.has(id)) state.firstSeen.set(id, 0);
    state.live = true;
    apply(data, true);
  });
  source.addEventListener("update", (event) => apply(JSON.parse(event.data), false));
  source.addEventListener("open", () => { state.live = true; setStatus(); });
  source.addEventListener("error", () => {
    state.live = false;
    setStatus();
    if (source.readyState === EventSource.CLOSED) {
      $("status").textContent = "not connected: the server refused the live feed (reload; a token may be needed)";
    }
  });
}

function apply(data, full) {
  const now = Date.now();
  const changed = new Set();
  for (const summary of data.sessions || []) {
    state.sessions.set(summary.session, summary);
    if (!state.firstSeen.has(summary.session)) state.firstSeen.set(summary.session, full ? 0 : now);
    changed.add(summary.session);
  }
  for (const id of data.removed || []) {
    state.sessions.delete(id);
    changed.add(id);
  }
  if ("listeners" in data) state.listeners = data.listeners;
  if ("faults" in data) state.faults = data.faults;
  if ("errors" in data) state.errors = data.errors;
  if ("matrix" in data) {
    state.matrix = data.matrix;
    $("nav-matrix").hidden = !data.matrix;
    if (data.matrix) $("nav-matrix").href = data.matrix;
  }
  setStatus();
  $("count-sessions").textContent = state.sessions.size ? String(state.sessions.size) : "";
  if ("messages" in data) {
    state.messages = data.messages;
    $("count-messages").textContent = data.messages.count ? String(data.messages.count) : "";
    if (state.view === "messages") showMessages();
  }
  if (state.view === "sessions") renderSessions();
  if (state.view === "session" && changed.has(state.detail)) showSession(state.detail);
  if (state.view === "control" && ("listeners" in data || "faults" in data)) renderControl();
}

// -- the session list ---------------------------------------------------------

function matches(summary) {
  const {text, persona, outcome} = state.filter;
  if (persona && summary.persona !== persona) return false;
  if (outcome && summary.outcome !== outcome) return false;
  if (!text) return true;
  const haystack = [summary.session, summary.persona, summary.peer, summary.listener, listenerName(summary.listener),
    tlsText(summary.tls), authText(summary.auth), summary.last_reply, summary.ended, summary.outcome,
    (summary.faults || []).join(" ")].join("\n").toLowerCase();
  return haystack.includes(text.toLowerCase());
}

function renderPersonaChoice() {
  const select = $("filter-persona");
  const personas = [...new Set([...state.sessions.values()].map((s) => s.persona))].sort();
  if (state.filter.persona && !personas.includes(state.filter.persona)) personas.push(state.filter.persona);
  const current = [...select.options].slice(1).map((o) => o.value);
  if (current.join("\n") === personas.join("\n")) return;
  select.replaceChildren(h("option", {value: ""}, "all"), ...personas.map((p) => h("option", {value: p}, p)));
  select.value = state.filter.persona;
}

function sessionRow(summary, now) {
  const fresh = now - (state.firstSeen.get(summary.session) || 0) < 3000;
  const outcome = summary.outcome.replace(/ /g, "-");
  const persona = [summary.persona];
  if (summary.behind) persona.push(h("span", {class: "sub"}, " behind a middlebox"));
  return h("tr", {class: `outcome-${outcome}${fresh ? " fresh" : ""}`, "data-session": summary.session},
    h("td", {class: "first"}, h("a", {href: sessionHref(summary.session), "data-session": summary.session,
      title: `${summary.session} — ${when(summary.started)}`}, clock(summary.started))),
    h("td", {class: "wide", title: summary.listener, "data-label": "listener"}, listenerName(summary.listener)),
    h("td", {class: "second"}, persona),
    h("td", {class: "mono", "data-label": "peer"}, summary.peer),
    h("td", {class: "tls line", "data-label": "TLS",
      title: summary.tls ? `${tlsText(summary.tls)} (${summary.tls.bits} bits)` : "no TLS"},
      summary.tls ? [summary.tls.version, h("span", {class: "sub"}, summary.tls.cipher),
        summary.tls.sni ? h("span", {class: "sub"}, `SNI ${summary.tls.sni}`) : null] : ""),
    h("td", {class: "line", "data-label": "auth"}, authText(summary.auth)),
    h("td", {class: "num", "data-label": "messages"}, String(summary.messages)),
    h("td", {class: "mono reply line", "data-label": "last reply"}, summary.last_reply || ""),
    h("td", {class: "end"}, h("span", {class: `badge ${outcome}`, title: summary.outcome}, summary.ended)));
}

function renderSessions() {
  renderPersonaChoice();
  const all = [...state.sessions.values()].sort((a, b) => b.started - a.started || (a.session < b.session ? 1 : -1));
  const shown = all.filter(matches).slice(0, MAX_ROWS);
  const focused = document.activeElement && document.activeElement.closest("#sessions") ?
    document.activeElement.getAttribute("data-session") : null;
  const now = Date.now();
  $("sessions").tBodies[0].replaceChildren(...shown.map((s) => sessionRow(s, now)));
  if (focused) {
    const again = $("sessions").querySelector(`a[data-session="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
  $("shown").textContent = all.length === shown.length ? `${all.length} sessions` : `${shown.length} of ${all.length} sessions`;
  $("sessions-empty").hidden = all.length > 0;
}

// -- one session ----------------------------------------------------------------

function fact(list, name, ...value) {
  list.append(h("dt", {}, name), h("dd", {}, ...value));
}

async function showSession(id) {
  const loading = ++state.loading;
  let session, text;
  try {
    session = await api("GET", apiPath("sessions", id));
    // After the records: the text form then holds at least their lines.
    text = await api("GET", apiPath("sessions", id, "/transcript"));
  } catch (error) {
    if (loading !== state.loading) return;
    $("h-session").textContent = `Session ${id}`;
    $("session-facts").replaceChildren(h("dt", {}, "Error"), h("dd", {class: "error"}, error.message));
    $("transcript").replaceChildren();
    return;
  }
  if (loading !== state.loading || state.detail !== id) return;
  renderSession(session, text.split("\n").slice(1));
}

function renderSession(session, lines) {
  $("h-session").textContent = `Session ${session.session}`;
  const facts = $("session-facts");
  facts.replaceChildren();
  fact(facts, "Persona", session.persona);
  fact(facts, "Listener", `${listenerName(session.listener)} (${session.listener})`);
  fact(facts, "Peer", session.peer);
  fact(facts, "Started", when(session.started));
  fact(facts, "TLS", session.tls ? `${tlsText(session.tls)} (${session.tls.bits} bits)` : "none");
  fact(facts, "Auth", session.auth ? authText(session.auth) : "none");
  const names = session.transcript.filter((r) => r.event === "message_accepted" && r.name).map((r) => r.name);
  fact(facts, "Messages", String(session.messages),
    ...names.map((name) => [" ", h("a", {href: messageHref(name)}, name)]));
  if (session.faults.length) fact(facts, "Faults fired", session.faults.join(", "));
  if (session.seed !== null && session.seed !== undefined) fact(facts, "Seed", h("code", {}, String(session.seed)),
    " (of the faults' dice: --seed replays them)");
  if (session.middlebox) {
    const upstream = state.sessions.has(session.upstream) ?
      h("a", {href: sessionHref(session.upstream)}, session.upstream) : session.upstream || "none";
    fact(facts, "Middlebox", `${session.middlebox}; the server's own session: `, upstream);
  }
  if (session.behind) fact(facts, "Behind", "the middlebox session ", h("a", {href: sessionHref(session.behind)}, session.behind));
  fact(facts, "Last reply", h("code", {}, session.last_reply || "none"));
  fact(facts, "Ended", h("span", {class: `badge ${session.outcome.replace(/ /g, "-")}`}, session.ended), ` (${session.outcome})`);
  $("download").href = apiPath("sessions", session.session, "/jsonl");
  $("download").setAttribute("download", `${session.session}.jsonl`);
  $("plain").href = apiPath("sessions", session.session, "/transcript");
  $("leg-choice").hidden = !session.middlebox;
  $("legend").textContent = session.middlebox ?
    "-> client to middlebox, <- middlebox to client, => middlebox to server, <= server to middlebox, === events" :
    "-> client to server, <- server to client, ~> <~ the same inside TLS, === events";
  renderTranscript(session, lines);
}

function renderTranscript(session, lines) {
  const items = [];
  let line = 0;
  let cut = 0;
  for (const record of session.transcript) {
    const isEvent = record.event !== undefined;
    const count = isEvent ? 1 : lineCount(record.data);
    const kind = isEvent ? "event" : `${record.leg === "server" ? "leg " : ""}${record.dir === "c" ? "c" : "s"}`;
    const time = record.t.toFixed(3);
    if (items.length >= MAX_LINES) {
      cut += state.mode === "bytes" ? 1 : count;
    } else if (state.mode === "bytes" && !isEvent) {
      const arrow = (lines[line] || "").slice(0, 2);
      items.push(h("li", {class: kind}, h("span", {class: "t"}, time), h("span", {class: "arrow"}, arrow),
        h("span", {class: "text"}, escapeBytes(record.data)), h("span", {class: "size"}, ` ${record.data.length} B`)));
    } else {
      for (let k = 0; k < count && line + k < lines.length; k++) {
        const text = lines[line + k];
        const arrow = isEvent ? "===" : text.slice(0, 2);
        items.push(h("li", {class: kind}, h("span", {class: "t"}, k === 0 ? time : ""),
          h("span", {class: "arrow"}, arrow), h("span", {class: "text"}, text.slice(arrow.length + 1))));
      }
    }
    line += count;
  }
  if (cut) items.push(h("li", {class: "cut"}, h("span", {class: "t"}), h("span", {class: "arrow"}, "…"),
    h("span", {class: "text"}, `${cut} more lines: see the arrow form as text, or download the .jsonl`)));
  const list = $("transcript");
  list.className = `transcript ${state.mode} legs-${state.legs}`;
  list.replaceChildren(...items);
}

// -- messages -------------------------------------------------------------------

async function showMessages() {
  let envelopes;
  try {
    envelopes = await api("GET", "/messages");
  } catch (error) {
    $("messages-empty").hidden = false;
    $("messages-empty").textContent = error.message;
    return;
  }
  if (state.view !== "messages") return;
  const rows = envelopes.reverse().map((m) => h("tr", {},
    h("td", {class: "first"}, h("a", {href: messageHref(m.name), "data-message": m.name, title: m.name},
      clock(receivedAt(m.name)))),
    h("td", {class: "mono line", "data-label": "from"}, m.sender),
    h("td", {class: "mono line", "data-label": "to"}, m.recipients.join(", ")),
    h("td", {class: "num", "data-label": "bytes"}, String(m.size)), h("td", {class: "second"}, m.profile),
    h("td", {"data-label": "session"}, h("a", {href: sessionHref(m.session_id)}, m.session_id))));
  $("messages").tBodies[0].replaceChildren(...rows);
  $("messages-empty").hidden = rows.length > 0;
  $("messages-empty").textContent = "No messages accepted yet.";
}

/** A Maildir name starts with the Unix time and microseconds it was received. */
function receivedAt(name) {
  const match = /^(\d+)\.M(\d+)/.exec(name);
  return match ? Number(match[1]) + Number(match[2]) / 1e6 : 0;
}

/** A message's bytes as text: CRLF ends a line; any other control byte is escaped. */
function sourceText(bytes) {
  return bytes.split("\r\n").map(escapeBytes).join("\n");
}

async function showMessage(name) {
  const loading = ++state.loading;
  const facts = $("message-facts");
  $("h-message").textContent = `Message ${name}`;
  let envelope, raw;
  try {
    envelope = await api("GET", apiPath("messages", name));
    const response = await fetch(apiPath("messages", name, "/raw"));
    raw = new Uint8Array(await response.arrayBuffer());
  } catch (error) {
    if (loading !== state.loading) return;
    facts.replaceChildren(h("dt", {}, "Error"), h("dd", {class: "error"}, error.message));
    $("message-source").textContent = "";
    return;
  }
  if (loading !== state.loading || state.detail !== name) return;
  facts.replaceChildren();
  fact(facts, "From", h("code", {}, envelope.sender || "<>"));
  fact(facts, "To", ...envelope.recipients.map((r, i) => [i ? ", " : "", h("code", {}, r)]));
  fact(facts, "HELO", h("code", {}, envelope.helo));
  fact(facts, "Peer", envelope.peer);
  fact(facts, "Persona", envelope.profile);
  fact(facts, "TLS", envelope.tls ? "yes" : "no");
  fact(facts, "Auth user", envelope.auth_user || "none");
  fact(facts, "Size", `${envelope.size} bytes`);
  fact(facts, "Session", h("a", {href: sessionHref(envelope.session_id)}, envelope.session_id));
  fact(facts, "Maildir", envelope.path ? h("code", {}, envelope.path) : "not written (no --maildir: kept in memory only)");
  $("raw-link").href = apiPath("messages", name, "/raw");
  $("raw-link").setAttribute("download", `${name}.eml`);
  let bytes = "";
  for (let i = 0; i < Math.min(raw.length, MAX_SOURCE); i += 8192) {
    bytes += String.fromCharCode(...raw.subarray(i, Math.min(i + 8192, raw.length, MAX_SOURCE)));
  }
  $("message-source").textContent = sourceText(bytes) +
    (raw.length > MAX_SOURCE ? `\n… ${raw.length - MAX_SOURCE} more bytes: download the raw message` : "");
}

// -- control --------------------------------------------------------------------

async function loadProfiles() {
  if (state.profiles === null) {
    state.profiles = (await api("GET", "/profiles")).filter((p) => !p.error);
  }
  return state.profiles;
}

function listenerRow(listener, profiles) {
  const select = h("select", {id: `persona-${listener.id}`, "aria-label": `Persona for listener ${listener.id}`,
    "data-profile": listener.profile},
    profiles.map((p) => h("option", {value: p.name, title: p.describes || ""}, p.name)));
  select.value = listener.profile;
  const error = h("p", {class: "error", role: "alert", id: `switch-error-${listener.id}`});
  const form = h("form", {class: "inline", "data-listener": listener.id, onsubmit: async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      await api("PUT", apiPath("listeners", listener.id, "/profile"), {profile: select.value});
    } catch (problem) {
      error.textContent = problem.message;
    }
  }}, select, h("button", {type: "submit"}, "Switch"), error);
  return h("tr", {"data-listener": listener.id},
    h("th", {scope: "row", class: "first"}, listener.id),
    h("td", {class: "mono line", "data-label": "endpoint"},
      listener.endpoint + (listener.implicit_tls ? " (implicit TLS)" : "")),
    h("td", {class: "serves second"}, listener.serves),
    h("td", {class: "num open", "data-label": "open connections"}, String(listener.open_connections)),
    h("td", {class: "line"}, form));
}

function renderControl() {
  const body = $("listeners").tBodies[0];
  const shown = [...body.rows].map((row) => row.getAttribute("data-listener"));
  if (shown.join("\n") !== state.listeners.map((l) => l.id).join("\n") || !state.profiles) {
    body.replaceChildren(...state.listeners.map((l) => listenerRow(l, state.profiles || [])));
  } else {
    // Update in place: a persona being chosen, the focus and an error line stay.
    state.listeners.forEach((listener, index) => {
      const row = body.rows[index];
      row.querySelector(".serves").textContent = listener.serves;
      row.querySelector(".open").textContent = String(listener.open_connections);
      const select = row.querySelector("select");
      if (select.getAttribute("data-profile") !== listener.profile) {
        select.setAttribute("data-profile", listener.profile);
        select.value = listener.profile;
      }
    });
  }
  $("faults").replaceChildren(...(state.faults.length ?
    state.faults.map((spec) => h("li", {}, h("code", {}, spec))) : [h("li", {class: "none"}, "none")]));
}

async function showControl() {
  try {
    await loadProfiles();
  } catch (error) {
    $("fault-error").textContent = error.message;
  }
  renderControl();
  try {
    const health = await api("GET", "/health");
    const list = $("health");
    list.replaceChildren();
    fact(list, "Version", health.version);
    fact(list, "Up for", `${Math.round(health.uptime)} s`);
    fact(list, "Listeners", String(health.listeners));
    fact(list, "Server-side errors", String(health.errors));
    fact(list, "API", h("a", {href: "/openapi.json"}, "OpenAPI document"), " · ", h("code", {}, "curl -H 'Accept: application/json' " + location.origin + "/"));
  } catch (error) {
    $("health").replaceChildren(h("dt", {}, "Error"), h("dd", {class: "error"}, error.message));
  }
}

function setUpControl() {
  $("fault-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const spec = $("fault-spec").value.trim();
    if (!spec) {
      $("fault-error").textContent = "a fault, e.g. rcpt:reply=452 4.5.3 Too many recipients";
      return;
    }
    try {
      state.faults = await api("POST", "/faults", {spec});
      $("fault-error").textContent = "";
      $("fault-spec").value = "";
    } catch (error) {
      $("fault-error").textContent = error.message;
    }
    renderControl();
  });
  $("faults-clear").addEventListener("click", async () => {
    try {
      state.faults = await api("DELETE", "/faults");
      $("fault-error").textContent = "";
    } catch (error) {
      $("fault-error").textContent = error.message;
    }
    renderControl();
  });
  $("reset-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("POST", "/reset");
      $("reset-result").textContent = `reset at ${clock(Date.now() / 1000)}`;
    } catch (error) {
      $("reset-result").textContent = error.message;
    }
  });
}

// -- views and keys ---------------------------------------------------------------

const VIEWS = ["sessions", "session", "messages", "message", "control"];

function route() {
  const [, kind = "sessions", ...rest] = (location.hash || "#/sessions").split("/");
  const id = rest.length ? decodeURIComponent(rest.join("/")) : null;
  let view = kind;
  if (kind === "sessions" && id) view = "session";
  if (kind === "messages" && id) view = "message";
  if (!VIEWS.includes(view)) view = "sessions";
  const moved = view !== state.view || id !== state.detail;
  state.view = view;
  state.detail = id;
  for (const name of VIEWS) $(`view-${name}`).hidden = name !== view;
  const nav = {sessions: "sessions", session: "sessions", messages: "messages", message: "messages", control: "control"};
  for (const name of ["sessions", "messages", "control"]) {
    if (nav[view] === name) $(`nav-${name}`).setAttribute("aria-current", "page");
    else $(`nav-${name}`).removeAttribute("aria-current");
  }
  if (view === "sessions") renderSessions();
  if (view === "session") showSession(id);
  if (view === "messages") showMessages();
  if (view === "message") showMessage(id);
  if (view === "control") showControl();
  if (moved && document.activeElement !== $("filter-text")) {
    $(`h-${view}`).focus({preventScroll: false});
  }
}

/** Move the focus to the next (+1) or previous (-1) row link of the list on show. */
function step(direction) {
  const table = state.view === "messages" ? $("messages") : $("sessions");
  const links = [...table.tBodies[0].querySelectorAll("tr > td:first-child > a")];
  if (!links.length) return;
  const at = links.indexOf(document.activeElement);
  const next = at < 0 ? (direction > 0 ? 0 : links.length - 1) : Math.max(0, Math.min(links.length - 1, at + direction));
  links[next].focus();
}

function onKey(event) {
  if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
  // Keys go to fields being typed in (and to lists being chosen from), not to the page.
  const typing = event.target.matches && event.target.matches(
    "textarea, select, input:not([type=radio]):not([type=checkbox]):not([type=button]):not([type=submit])");
  if (typing) return;
  if (event.key === "/" && state.view === "sessions") {
    event.preventDefault();
    $("filter-text").focus();
  } else if ((event.key === "j" || event.key === "k") && (state.view === "sessions" || state.view === "messages")) {
    event.preventDefault();
    step(event.key === "j" ? 1 : -1);
  } else if (event.key === "Escape" && state.view === "session") {
    location.hash = "#/sessions";
  } else if (event.key === "Escape" && state.view === "message") {
    location.hash = "#/messages";
  }
}

function setUp() {
  // The token came in the address (?token=...) and is now a cookie: keep it out of the history.
  if (new URLSearchParams(location.search).has("token")) {
    history.replaceState(null, "", location.pathname + location.hash);
  }
  $("filters").addEventListener("submit", (event) => event.preventDefault());
  $("filter-text").addEventListener("input", (event) => { state.filter.text = event.target.value.trim(); renderSessions(); });
  $("filter-persona").addEventListener("change", (event) => { state.filter.persona = event.target.value; renderSessions(); });
  $("filter-outcome").addEventListener("change", (event) => { state.filter.outcome = event.target.value; renderSessions(); });
  $("sessions").addEventListener("click", (event) => {
    const row = event.target.closest("tr[data-session]");
    if (row && !event.target.closest("a")) location.hash = sessionHref(row.getAttribute("data-session"));
  });
  for (const radio of document.querySelectorAll("input[name=mode]")) {
    radio.addEventListener("change", () => { state.mode = radio.value; if (state.detail) showSession(state.detail); });
  }
  $("legs").addEventListener("change", (event) => {
    state.legs = event.target.value;
    $("transcript").className = `transcript ${state.mode} legs-${state.legs}`;
  });
  setUpControl();
  document.addEventListener("keydown", onKey);
  window.addEventListener("hashchange", route);
  setStatus();
  route();
  connect();
  // The "new" mark of a session fades after three seconds.
  setInterval(() => {
    if (state.view === "sessions" && document.querySelector("#sessions tr.fresh")) renderSessions();
  }, 1000);
}

setUp();
