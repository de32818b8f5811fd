// gridmq's operator console. Plain JS, no library: every value from the broker is put into
// the page as text (never as HTML), and the admin token stays in sessionStorage.
"use strict";

const TOKEN_KEY = "gridmq.console.token";
const POLL_MS = 3000;
const KEEP_MS = 15 * 60 * 1000;
const TRACE_KEEP = 200;
const COLOURS = ["#0b5cad", "#a4161a", "#1b6e20", "#6a3d9a", "#b35900", "#00727a", "#4a4a4a", "#9c2a72"];

// === helpers ===

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "onclick") node.addEventListener("click", value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

const $ = (id) => document.getElementById(id);

// A time from the API (RFC 3339, UTC) in the browser's local time; the raw value stays in the
// title. `datetime` and `Date` take at most milliseconds, and the API sends up to 7 digits.
function timeEl(raw) {
  if (!raw) return "-";
  const iso = raw.replace(/(\.\d{3})\d+/, "$1");
  const date = new Date(iso);
  if (isNaN(date.getTime())) return el("time", { text: raw });
  return el("time", { datetime: iso, title: raw, text: date.toLocaleString() });
}

function say(text, error) {
  const status = $("status");
  status.textContent = text || "";
  status.className = error ? "error" : "";
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

class Unauthorized extends Error {}

// Every call to the management API carries the token; a 401 signs out.
async function api(path, options) {
  const opts = Object.assign({ method: "GET" }, options || {});
  const headers = { Authorization: "Bearer " + (token() || "") };
  if (opts.body !== undefined) {
    headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(opts.body);
  }
  opts.headers = headers;
  const response = await fetch(path, opts);
  if (response.status === 401) {
    signOut("The admin token was refused; sign in again.");
    throw new Unauthorized("401");
  }
  const text = await response.text();
  if (opts.raw) return text;
  const body = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const message = body && body.error ? body.error.message : response.statusText;
    throw new Error(response.status + " " + message);
  }
  return body;
}

function failed(error) {
  if (!(error instanceof Unauthorized)) say(String(error.message || error), true);
}

function confirmAction(text) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    $("confirm-cancel").focus();
  });
}

// === sign-in and navigation ===

let timers = [];

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  stopTrace();
  timers.forEach(clearInterval);
  timers = [];
  $("nav").hidden = true;
  for (const page of document.querySelectorAll("main > section")) page.hidden = page.id !== "page-login";
  $("login-error").textContent = message || "";
  $("token").value = "";
  $("token").focus();
}

async function signIn(event) {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  try {
    await api("/console/api/info");
  } catch (error) {
    if (!(error instanceof Unauthorized)) $("login-error").textContent = String(error.message);
    return;
  }
  $("token").value = "";
  start();
}

function start() {
  $("nav").hidden = false;
  $("login-error").textContent = "";
  timers.push(setInterval(() => sampleMetrics().catch(failed), POLL_MS));
  sampleMetrics().catch(failed);
  if (!location.hash || location.hash === "#login") location.hash = "#overview";
  else show();
}

function show() {
  if (!token()) return signOut();
  const name = (location.hash || "#overview").slice(1);
  const page = $("page-" + name) ? name : "overview";
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.id !== "page-" + page;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  say("");
  const load = { overview: loadOverview, clients: loadClients, access: loadAccess, routing: loadRouting, trace: () => {} }[page];
  Promise.resolve(load()).catch(failed);
  $("main").focus();
}

// === overview ===

// Samples of /metrics: [{t, values: Map("name{labels}" -> number)}], 15 minutes of them.
const samples = [];

function parseMetrics(text) {
  const values = new Map();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    const value = Number(line.slice(space + 1));
    if (!Number.isNaN(value)) values.set(line.slice(0, space), value);
  }
  return values;
}

function labelsOf(key) {
  const labels = {};
  const open = key.indexOf("{");
  if (open < 0) return labels;
  const re = /(\w+)="((?:[^"\\]|\\.)*)"/g;
  let match;
  while ((match = re.exec(key.slice(open)))) labels[match[1]] = match[2];
  return labels;
}

function nameOf(key) {
  const open = key.indexOf("{");
  return open < 0 ? key : key.slice(0, open);
}

// Sums the series of `name` whose labels pass `keep`, grouped by `group(labels)`.
function sumBy(values, name, group, keep) {
  const out = new Map();
  for (const [key, value] of values) {
    if (nameOf(key) !== name) continue;
    const labels = labelsOf(key);
    if (keep && !keep(labels)) continue;
    const g = group ? group(labels) : name;
    out.set(g, (out.get(g) || 0) + value);
  }
  return out;
}

async function sampleMetrics() {
  const text = await api("/metrics", { raw: true });
  const now = Date.now();
  samples.push({ t: now, values: parseMetrics(text) });
  while (samples.length && samples[0].t < now - KEEP_MS) samples.shift();
  if (!$("page-overview").hidden) await loadOverview();
}

const bySubscription = (l) => l.topic + "/" + l.subscription;

// Each chart: its series per sample, as gauges or as per-second rates of counters.
const CHARTS = [
  { id: "connections", title: "Connections", unit: "", series: (v) => new Map([["connections", sum(sumBy(v, "gridmq_mqtt_connections"))]]) },
  { id: "messages", title: "Messages per second", unit: "/s", rate: true, series: (v) => new Map([
      ["in", sum(sumBy(v, "gridmq_mqtt_published_messages_total"))],
      ["out", sum(sumBy(v, "gridmq_mqtt_delivered_messages_total"))],
    ]) },
  { id: "routed", title: "Routed events per second", unit: "/s", rate: true,
    series: (v) => sumBy(v, "gridmq_routing_routed_messages_total", (l) => l.result || "routed") },
  { id: "delivery", title: "Deliveries per second by subscription", unit: "/s", rate: true, series: (v) => {
      const out = new Map();
      for (const [k, n] of sumBy(v, "gridmq_subscription_delivered_events_total", bySubscription)) out.set(k + " ok", n);
      for (const [k, n] of sumBy(v, "gridmq_subscription_failed_deliveries_total", bySubscription)) out.set(k + " failed", n);
      return out;
    } },
  { id: "backlog", title: "Backlog (events waiting)", unit: "", series: (v) => sumBy(v, "gridmq_topic_backlog_events", (l) => l.topic) },
];

function sum(map) {
  let total = 0;
  for (const value of map.values()) total += value;
  return total;
}

function points(chart) {
  const lines = new Map();
  let previous = null;
  for (const sample of samples) {
    const series = chart.series(sample.values);
    if (chart.rate) {
      if (previous) {
        const seconds = (sample.t - previous.t) / 1000;
        for (const [name, value] of series) {
          const before = previous.series.get(name) || 0;
          push(lines, name, sample.t, Math.max(0, value - before) / seconds);
        }
      }
      previous = { t: sample.t, series };
    } else {
      for (const [name, value] of series) push(lines, name, sample.t, value);
    }
  }
  return lines;
}

function push(lines, name, t, value) {
  if (!lines.has(name)) lines.set(name, []);
  lines.get(name).push([t, value]);
}

function format(value) {
  if (value >= 100 || Number.isInteger(value)) return String(Math.round(value));
  return value.toFixed(1);
}

function drawOverview() {
  const holder = $("charts");
  const now = Date.now();
  // The x axis spans what the page has seen, from 20 seconds up to the 15 minutes it keeps.
  const span = Math.min(KEEP_MS, Math.max(20 * 1000, samples.length ? now - samples[0].t : 0));
  const spanText = span < 120 * 1000 ? Math.round(span / 1000) + " s" : Math.round(span / 60000) + " min";
  for (const chart of CHARTS) {
    let figure = $("chart-" + chart.id);
    if (!figure) {
      figure = el("figure", { id: "chart-" + chart.id, "aria-labelledby": "chart-" + chart.id + "-title" },
        el("figcaption", { id: "chart-" + chart.id + "-title" }, el("span", { text: chart.title }), el("span", { class: "latest" })),
        svg("svg", { class: "chart", viewBox: "0 0 400 140", preserveAspectRatio: "none", role: "img" }),
        el("ul", { class: "legend" }));
      holder.append(figure);
    }
    const lines = points(chart);
    let max = 1;
    for (const line of lines.values()) for (const [, v] of line) max = Math.max(max, v);
    const graph = figure.querySelector("svg");
    graph.replaceChildren(svg("line", { class: "axis", x1: 0, y1: 130, x2: 400, y2: 130 }));
    const top = svg("text", { x: 2, y: 10 });
    top.textContent = format(max) + chart.unit;
    const left = svg("text", { x: 2, y: 139 });
    left.textContent = "−" + spanText;
    graph.append(top, left);
    const legend = figure.querySelector(".legend");
    legend.replaceChildren();
    const latest = [];
    let index = 0;
    for (const [name, line] of lines) {
      const colour = COLOURS[index++ % COLOURS.length];
      const path = line.map(([t, v]) => {
        const x = 400 - ((now - t) / span) * 400;
        const y = 130 - (v / max) * 115;
        return x.toFixed(1) + "," + y.toFixed(1);
      }).join(" ");
      graph.append(svg("polyline", { points: path, fill: "none", stroke: colour, "stroke-width": 2, "vector-effect": "non-scaling-stroke" }));
      const last = line.length ? line[line.length - 1][1] : 0;
      latest.push(name + " " + format(last) + chart.unit);
      const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
      swatch.style.background = colour;
      legend.append(el("li", {}, swatch, name + ": " + format(last) + chart.unit));
    }
    const summary = latest.length ? latest.join(", ") : "no data yet";
    graph.setAttribute("aria-label", chart.title + ", now: " + summary);
    figure.querySelector(".latest").textContent = lines.size === 1 ? latest[0].replace(/^\S+ /, "") : "";
  }
  drawDeliveries();
}

function drawDeliveries() {
  const last = samples[samples.length - 1];
  const body = $("deliveries").querySelector("tbody");
  body.replaceChildren();
  if (!last) return;
  const v = last.values;
  const delivered = sumBy(v, "gridmq_subscription_delivered_events_total", bySubscription);
  const failedCounts = sumBy(v, "gridmq_subscription_failed_deliveries_total", bySubscription);
  const dead = sumBy(v, "gridmq_subscription_dead_lettered_events_total", bySubscription);
  const backlog = sumBy(v, "gridmq_topic_backlog_events", bySubscription, (l) => l.subscription);
  const names = new Set([...delivered.keys(), ...failedCounts.keys(), ...dead.keys()]);
  for (const name of [...names].sort()) {
    body.append(el("tr", {}, el("th", { scope: "row", text: name }), el("td", { text: delivered.get(name) || 0 }),
      el("td", { text: failedCounts.get(name) || 0 }), el("td", { text: dead.get(name) || 0 }), el("td", { text: backlog.get(name) || 0 })));
  }
}

function duration(seconds) {
  const d = Math.floor(seconds / 86400), h = Math.floor(seconds / 3600) % 24, m = Math.floor(seconds / 60) % 60;
  return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + (seconds % 60) + "s";
}

async function loadOverview() {
  const info = await api("/console/api/info");
  const facts = $("info");
  facts.replaceChildren(
    el("dt", { text: "Version" }), el("dd", { text: info.version }),
    el("dt", { text: "Uptime" }), el("dd", { text: duration(info.uptimeSeconds) }),
    el("dt", { text: "Listeners" }), el("dd", {}, info.listeners.join(", ")),
    el("dt", { text: "Store" }), el("dd", { text: info.store }),
    el("dt", { text: "Routing" }), el("dd", { text: info.routing ? "on" : "off" }));
  drawOverview();
}

// === clients and sessions ===

async function loadClients(event) {
  if (event) event.preventDefault();
  const query = encodeURIComponent($("client-query").value.trim());
  const listing = await api("/console/api/sessions?search=" + query);
  const body = $("sessions").querySelector("tbody");
  body.replaceChildren();
  for (const row of listing.value) {
    const state = row.connected ? "connected (" + row.node + ")" : row.hasSession ? "session, not connected" : "no session";
    const subscriptions = Object.entries(row.subscriptions).map(([filter, qos]) => filter + " (QoS " + qos + ")");
    const expiry = !row.hasSession ? "" : row.sessionExpirySeconds === null ? "never" : row.sessionExpirySeconds + " s";
    const actions = el("td", { class: "actions" });
    if (row.connected) {
      actions.append(el("button", { type: "button", class: "secondary", "data-action": "disconnect", "data-client": row.clientId,
        "aria-label": "Disconnect " + row.clientId, onclick: () => sessionAction(row.clientId, "disconnect") }, "Disconnect"));
    }
    if (row.hasSession) {
      actions.append(el("button", { type: "button", class: "danger", "data-action": "delete", "data-client": row.clientId,
        "aria-label": "Delete the session of " + row.clientId, onclick: () => sessionAction(row.clientId, "delete") }, "Delete session"));
    }
    body.append(el("tr", { "data-client": row.clientId },
      el("th", { scope: "row", text: row.clientId }), el("td", { text: row.authenticationName || "" }),
      el("td", { class: "state", text: state }), el("td", { text: row.protocol || "" }),
      el("td", { text: subscriptions.join(", ") }), el("td", { text: row.queued }), el("td", { text: row.inFlight }),
      el("td", { text: expiry }), actions));
  }
  if (listing.truncated) say("Only the first rows are shown; search to narrow them down.");
}

async function sessionAction(clientId, action) {
  const question = action === "disconnect"
    ? "Disconnect client " + clientId + "? Its session stays as its expiry says."
    : "Delete the session of " + clientId + "? Its subscriptions and queued messages are discarded.";
  if (!(await confirmAction(question))) return;
  try {
    const path = "/console/api/sessions/" + encodeURIComponent(clientId);
    if (action === "disconnect") await api(path + "/disconnect", { method: "POST" });
    else await api(path, { method: "DELETE" });
    say(action === "disconnect" ? "Disconnected " + clientId + "." : "Deleted the session of " + clientId + ".");
    setTimeout(() => loadClients().catch(failed), 300);
  } catch (error) {
    failed(error);
  }
}

// === access ===

function attributes(properties) {
  return Object.entries(properties.attributes || {}).map(([k, v]) => k + "=" + JSON.stringify(v)).join(", ");
}

async function loadAccess() {
  const [clients, groups, spaces, bindings] = await Promise.all(
    ["clients", "clientGroups", "topicSpaces", "permissionBindings"].map((kind) => api("/" + kind)));
  const list = $("known-clients");
  list.replaceChildren(...clients.value.map((c) => el("option", { value: c.name })));
  // Group membership comes from the explainer, which asks the authorizer: no second
  // implementation of the query language in the page.
  const members = new Map();
  const groupsOf = new Map();
  await Promise.all(clients.value.slice(0, 200).map(async (client) => {
    const answer = await api("/access:check", { method: "POST", body: { client: client.name, action: "publish", topic: "x" } });
    const matched = answer.groups.filter((g) => g.matched).map((g) => g.name);
    groupsOf.set(client.name, matched);
    for (const group of matched) {
      if (!members.has(group)) members.set(group, []);
      members.get(group).push(client.name);
    }
  }));
  fill("access-clients", clients.value, (c) => [c.name, c.properties.authenticationName || c.name, c.properties.state || "Enabled",
    attributes(c.properties), (groupsOf.get(c.name) || []).join(", ")]);
  fill("access-groups", groups.value, (g) => [g.name, g.properties.query, (members.get(g.name) || []).sort().join(", ") || "none registered"]);
  fill("access-spaces", spaces.value, (s) => [s.name, s.properties.topicTemplates.join("  ")]);
  fill("access-bindings", bindings.value, (b) => [b.name, b.properties.clientGroupName, b.properties.permission, b.properties.topicSpaceName]);
}

function fill(tableId, rows, cells) {
  const body = $(tableId).querySelector("tbody");
  body.replaceChildren(...rows.map((row) => {
    const [first, ...rest] = cells(row);
    return el("tr", {}, el("th", { scope: "row", text: first }), rest.map((text) => el("td", { text })));
  }));
}

async function explain(event) {
  event.preventDefault();
  const out = $("explanation");
  try {
    const answer = await api("/access:check", { method: "POST", body: {
      client: $("explain-client").value.trim(), action: $("explain-action").value, topic: $("explain-topic").value } });
    const verdict = el("p", { id: "explain-verdict", class: answer.allowed ? "allowed" : "denied" },
      answer.allowed ? "Allowed" : "Denied");
    const who = el("p", {}, "Judged as " + answer.authenticationName + " (" +
      (answer.disabled ? "disabled" : answer.registered ? "registered" : "not registered") + "; found as " + answer.client.foundAs + ").");
    const groups = el("p", {}, "Client groups: " + (answer.groups.filter((g) => g.matched).map((g) => g.name).join(", ") || "none") +
      "; not in: " + (answer.groups.filter((g) => !g.matched).map((g) => g.name).join(", ") || "none") + ".");
    const templates = (b) => el("ul", {}, b.templates.map((t) => el("li", {},
      el("code", { text: t.substituted === null ? t.template + " (does not apply)" : t.substituted }),
      t.matches ? " matches" : "")));
    const rows = answer.bindings.map((b) => el("tr", { "data-verdict": b.verdict },
      el("th", { scope: "row", text: b.binding }), el("td", { text: b.clientGroup }), el("td", { text: b.permission }),
      el("td", { text: b.topicSpace }), el("td", { text: b.why }), el("td", {}, templates(b))));
    const headings = ["Binding", "Client group", "Permission", "Topic space", "Verdict", "Templates for this client"];
    const table = el("table", { id: "explain-bindings" },
      el("caption", { text: "Each permission binding" }),
      el("thead", {}, el("tr", {}, headings.map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, rows));
    out.replaceChildren(verdict, el("p", { id: "explain-reason", text: answer.reason }), who, groups, table);
  } catch (error) {
    out.replaceChildren(el("p", { class: "error", text: String(error.message || error) }));
  }
}

// === routing ===

let deadLetterTarget = null;

async function loadRouting() {
  const info = await api("/console/api/info");
  $("routing-off").hidden = info.routing;
  if (!info.routing) return;
  const [subs, topics] = await Promise.all([api("/routing/subscriptions"), api("/topics")]);
  const body = $("subscriptions").querySelector("tbody");
  body.replaceChildren(...subs.value.map((s) => {
    const e = s.endpoint;
    const endpoint = !e ? [] : [(e.validated ? "validated" : "handshake pending") + ", " + e.validationAttempts + " handshake attempt(s)",
      e.probation ? el("span", { class: "probation" }, "; on probation until ", timeEl(e.probationUntil)) : null];
    const lastError = !e || !e.lastError ? [] : [e.lastError, " at ", timeEl(e.lastErrorTime)];
    return el("tr", { "data-subscription": s.topic + "/" + s.name },
      el("td", { text: s.topic }), el("th", { scope: "row", text: s.name }), el("td", { text: s.deliveryMode }),
      el("td", { class: "endpoint" }, endpoint), el("td", { class: "last-error" }, lastError),
      el("td", { text: s.waiting }), el("td", { text: s.locked }),
      el("td", { class: "dead-count", text: s.deadLetters }),
      el("td", {}, el("button", { type: "button", class: "secondary", "data-action": "dead-letters",
        "aria-label": "Dead letters of " + s.topic + "/" + s.name, onclick: () => showDeadLetters(s.topic, s.name).catch(failed) }, "Dead letters")));
  }));
  $("topics").replaceChildren(...topics.value.map((t) => el("li", {}, el("code", { text: t.name }),
    t.properties && t.properties.inputSchema ? " (" + t.properties.inputSchema + ")" : "")));
  if (deadLetterTarget) await showDeadLetters(deadLetterTarget.topic, deadLetterTarget.name);
}

function deadLetterPath(target) {
  return "/routing/topics/" + encodeURIComponent(target.topic) + "/eventSubscriptions/" + encodeURIComponent(target.name) + "/deadLetters";
}

async function showDeadLetters(topic, name) {
  deadLetterTarget = { topic, name };
  const listing = await api(deadLetterPath(deadLetterTarget));
  $("dead-letters").hidden = false;
  $("dl-title").textContent = "Dead letters of " + topic + "/" + name + " (" + listing.value.length + ")";
  $("dl-list").replaceChildren(...listing.value.map((item) => {
    const record = item.record;
    const props = record.deadletterProperties || record.deadLetterProperties || {};
    const check = el("input", { type: "checkbox", id: "dl-" + item.id, "data-id": item.id });
    return el("li", { "data-id": item.id },
      el("div", { class: "actions" }, check, el("label", { for: "dl-" + item.id },
        "#" + item.id + ": " + (props.deadletterreason || "") + ", " + (props.deliveryattempts || 0) + " attempts, last " +
        (props.deliveryresult || "none") + " " + (props.deliverystatuscode || "") + " at " + (props.deliveryattemptutc || "-")),
        el("button", { type: "button", class: "secondary", "data-action": "redrive-one", onclick: () => deadLetterAction("redrive", [item.id]) }, "Re-drive"),
        el("button", { type: "button", class: "danger", "data-action": "delete-one", onclick: () => deadLetterAction("delete", [item.id]) }, "Delete")),
      decodedData(record.event),
      el("pre", { class: "dl-record", text: JSON.stringify(record, null, 2) }));
  }));
}

// An event's binary data (`data_base64`) as text, when it is UTF-8: JSON pretty-printed.
function decodedData(event) {
  if (!event || typeof event.data_base64 !== "string") return null;
  try {
    const bytes = Uint8Array.from(atob(event.data_base64), (c) => c.charCodeAt(0));
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    let shown = text;
    try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* not JSON: as text */ }
    return el("div", {}, "Data (data_base64, decoded):", el("pre", { class: "dl-data", text: shown }));
  } catch (_) {
    return null;
  }
}

async function deadLetterAction(action, ids) {
  if (!deadLetterTarget) return;
  const what = ids ? ids.length + " dead letter(s)" : "every dead letter";
  if (!(await confirmAction((action === "redrive" ? "Re-drive " : "Delete ") + what + " of " + deadLetterTarget.topic + "/" + deadLetterTarget.name + "?"))) return;
  try {
    const path = deadLetterPath(deadLetterTarget);
    const body = ids ? { ids } : undefined;
    const answer = action === "redrive"
      ? await api(path + "/redrive", { method: "POST", body })
      : await api(path, { method: "DELETE", body });
    say(action === "redrive" ? "Re-driven: " + answer.redriven + "." : "Deleted: " + answer.deleted + ".");
    await loadRouting();
  } catch (error) {
    failed(error);
  }
}

function selectedDeadLetters() {
  return [...document.querySelectorAll("#dl-list input[type=checkbox]:checked")].map((c) => Number(c.dataset.id));
}

// === live trace ===

let traceAbort = null;

async function startTrace(event) {
  event.preventDefault();
  stopTrace();
  const filter = $("trace-filter").value.trim();
  const controller = new AbortController();
  traceAbort = controller;
  $("trace-start").disabled = true;
  $("trace-stop").disabled = false;
  $("trace-list").replaceChildren();
  $("trace-state").textContent = "Connecting…";
  try {
    const response = await fetch("/console/api/trace?filter=" + encodeURIComponent(filter), {
      headers: { Authorization: "Bearer " + (token() || "") }, signal: controller.signal });
    if (response.status === 401) return signOut("The admin token was refused; sign in again.");
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      throw new Error(body && body.error ? body.error.message : response.statusText);
    }
    $("trace-state").textContent = "Watching " + filter + ".";
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const chunk = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        for (const line of chunk.split("\n")) if (line.startsWith("data: ")) traceEvent(JSON.parse(line.slice(6)), filter);
      }
    }
    $("trace-state").textContent = "The trace ended.";
  } catch (error) {
    if (error.name !== "AbortError") $("trace-state").textContent = "The trace failed: " + String(error.message || error);
  } finally {
    if (traceAbort === controller) {
      traceAbort = null;
      $("trace-start").disabled = false;
      $("trace-stop").disabled = true;
    }
  }
}

function stopTrace() {
  if (traceAbort) {
    traceAbort.abort();
    traceAbort = null;
    $("trace-state").textContent = "Stopped.";
  }
  $("trace-start").disabled = false;
  $("trace-stop").disabled = true;
}

function traceEvent(event, filter) {
  if (event.kind === "lost") {
    $("trace-state").textContent = "Watching " + filter + ". Lost so far: " + event.dropped +
      " (this viewer fell behind), " + event.sampledOut + " (sampled out under load).";
    return;
  }
  const routed = event.routed.length
    ? event.routed.map((r) => el("div", {}, "Routed to topic " + r.topic + ", taken by: " + (r.subscriptions.join(", ") || "no subscription"),
      el("pre", { text: JSON.stringify(r.event, null, 2) })))
    : [el("div", { text: "Not routed." })];
  const item = el("li", { class: "trace-message" },
    el("div", {}, el("strong", { class: "trace-topic", text: event.topic }),
      " QoS " + event.qos + (event.retain ? ", retained" : "") + ", from " + event.clientId +
      " (" + event.authenticationName + "), " + event.payloadBytes + " bytes, " + new Date(event.at).toISOString()),
    el("pre", { class: "trace-payload", text: event.payloadPreview }), routed);
  const list = $("trace-list");
  list.prepend(item);
  while (list.children.length > TRACE_KEEP) list.lastChild.remove();
}

// === wiring ===

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", signIn);
  $("logout").addEventListener("click", () => signOut("Signed out."));
  $("client-search").addEventListener("submit", (e) => loadClients(e).catch(failed));
  $("explain").addEventListener("submit", explain);
  $("trace-form").addEventListener("submit", startTrace);
  $("trace-stop").addEventListener("click", stopTrace);
  $("dl-redrive-selected").addEventListener("click", () => deadLetterAction("redrive", selectedDeadLetters()));
  $("dl-delete-selected").addEventListener("click", () => deadLetterAction("delete", selectedDeadLetters()));
  $("dl-redrive-all").addEventListener("click", () => deadLetterAction("redrive", null));
  $("dl-delete-all").addEventListener("click", () => deadLetterAction("delete", null));
  window.addEventListener("hashchange", show);
  if (token()) {
    api("/console/api/info").then(start, (error) => { if (!(error instanceof Unauthorized)) failed(error); });
  } else {
    signOut();
  }
});
