// The agent console: live state and screen pop (server-sent events), state
// buttons, today's figures, and the wrap-up form with the call's ticket.
import {send, strings} from "/static/common.js";

const t = strings();
const root = document.querySelector(".console");
const agentId = root.dataset.agent;
const $ = (id) => document.getElementById(id);
const say = (key, values = {}) =>
  Object.entries(values).reduce((text, [k, v]) => text.replace(`{${k}}`, v), t[key] || key);

let popCallId = null;   // the call shown in the screen pop
let wrapCallId = null;  // the call the wrap-up form is for
let wrapUntil = null;   // Date the wrap-up ends
let wrapRefreshed = null;  // the call whose screen pop was fetched again at wrap-up
let lastState = null;

function renderState(view) {
  const state = $("state");
  state.textContent = say(`console.state.${view.state}`);
  state.dataset.state = view.state;
  $("state-reason").textContent = view.reason ? `(${say(`console.reason.${view.reason}`)})` : "";
  $("state-since").textContent = view.since ? new Date(view.since).toLocaleTimeString() : "";
  $("pending").textContent = view.pending ? say("console.pending", {action: view.pending[0]}) : "";
  renderQueues(view.queues);
}

// The queue rows are updated in place, never rebuilt: the figures change every few
// seconds, and a button replaced between the agent's mouse-down and mouse-up
// swallows the click.
function renderQueues(queues) {
  const body = $("queue-rows");
  const rows = new Map([...body.rows].map((row) => [row.dataset.queue, row]));
  Object.entries(queues).forEach(([name, q], index) => {
    let row = rows.get(name);
    rows.delete(name);
    if (!row) row = newQueueRow(body, name);
    row.dataset.in = String(q.in);
    row.cells[1].textContent = q.waiting;
    row.cells[2].textContent = q.longest_wait_s;
    const button = row.querySelector("button");
    button.dataset.queueAction = q.in ? "leave" : "join";
    button.textContent = say(q.in ? "console.queue.leave" : "console.queue.join");
    if (body.rows[index] !== row) body.insertBefore(row, body.rows[index] || null);
  });
  for (const gone of rows.values()) gone.remove();
}

function newQueueRow(body, name) {
  const row = body.insertRow();
  row.dataset.queue = name;
  for (let i = 0; i < 4; i++) row.insertCell();
  row.cells[0].textContent = t[`queue.${name}`] || name;
  const button = document.createElement("button");
  button.type = "button";
  row.cells[3].append(button);
  return row;
}

async function showPop(callId) {
  popCallId = callId;
  const pop = await send("GET", `/api/console/calls/${encodeURIComponent(callId)}`);
  if (popCallId !== callId) return;  // a newer call came meanwhile
  $("pop").hidden = false;
  $("pop-number").textContent = pop.call.caller_number || "—";
  const resident = pop.resident;
  $("pop-resident").textContent = resident
    ? `${resident.name} · ${[resident.building, resident.unit, resident.room].filter(Boolean).join("-")}`
    : say("console.unknown_caller");
  const vip = $("pop-vip");
  vip.hidden = !resident || resident.vip === "none";
  vip.textContent = resident && resident.vip !== "none" ? say(`console.vip.${resident.vip}`) : "";
  const intent = pop.call.ivr_intent ? say(`console.intent.${pop.call.ivr_intent}`) : (pop.call.queue || "");
  $("pop-choice").textContent = say("console.choice", {choice: intent});
  const list = $("pop-tickets");
  list.replaceChildren();
  for (const ticket of pop.tickets) {
    const item = document.createElement("li");
    item.textContent = `${ticket.number} · ${say(`category.${ticket.category}`)} · ${ticket.urgency} · ${ticket.status} · ${ticket.description}`;
    list.append(item);
  }
  if (!pop.tickets.length) {
    const item = document.createElement("li");
    item.textContent = say("console.no_tickets");
    list.append(item);
  }
  fillForm(pop.form);
  showToConfirm(pop.confirm || {});
}

// The fields the analysis was unsure of: highlighted, with the classifier's reasons;
// what the agent saves is stored as their value beside the automatic one.
function showToConfirm(confirm) {
  const form = $("wrap-form");
  for (const element of form.elements) element.classList.remove("to-confirm");
  const note = $("wrap-confirm");
  note.replaceChildren();
  const names = Object.keys(confirm);
  note.hidden = names.length === 0;
  if (!names.length) return;
  const head = document.createElement("p");
  head.textContent = say("console.confirm");
  note.append(head);
  const list = document.createElement("ul");
  for (const name of names) {
    if (form.elements[name]) form.elements[name].classList.add("to-confirm");
    const item = document.createElement("li");
    const label = form.elements[name] ? form.elements[name].closest("label") : null;
    const title = label ? label.firstChild.textContent.trim() : name;
    item.textContent = `${title}: ${say("console.confirm_why")} ${confirm[name].join("；")}`;
    list.append(item);
  }
  note.append(list);
}

// Fills the wrap-up form; a field the agent has already edited keeps their value.
function fillForm(values) {
  const form = $("wrap-form");
  for (const [name, value] of Object.entries(values)) {
    const element = form.elements[name];
    if (element && !element.dataset.touched && value !== null && value !== undefined) element.value = value;
  }
}
$("wrap-form").addEventListener("input", (event) => { event.target.dataset.touched = "1"; });

function renderWrap(view) {
  const wrap = view.wrap_up;
  const callId = wrap ? wrap.call_id : (view.call && !view.call.ringing ? view.call.call_id : null);
  if (!callId) {
    if (view.state !== "wrap_up") {
      wrapUntil = null;
      $("wrap-left").textContent = "";
    }
    return;
  }
  if (wrapCallId !== callId) {
    wrapCallId = callId;
    $("wrap-result").textContent = "";
    for (const element of $("wrap-form").elements) delete element.dataset.touched;
  }
  if (wrap && wrapRefreshed !== callId) {
    // The call has ended: its analysis may have filled the ticket by now.
    wrapRefreshed = callId;
    showPop(callId).catch((e) => console.error(e));
  }
  $("wrap").hidden = false;
  wrapUntil = wrap ? new Date(Date.now() + wrap.seconds_left * 1000) : null;
  tick();
}

function tick() {
  if (!wrapUntil) return;
  const left = Math.max(0, Math.round((wrapUntil - Date.now()) / 1000));
  $("wrap-left").textContent = say("console.wrap_left", {seconds: left});
}
setInterval(tick, 1000);

async function refreshToday() {
  const today = await send("GET", "/api/console/today");
  for (const node of $("today").querySelectorAll("[data-figure]")) {
    const value = today[node.dataset.figure];
    node.textContent = value === null || value === undefined ? "–" : value;
  }
}

function onView(view) {
  if (!view) return;
  renderState(view);
  const callId = view.call ? view.call.call_id : (view.wrap_up ? view.wrap_up.call_id : null);
  if (callId && callId !== popCallId) showPop(callId).catch((e) => console.error(e));
  renderWrap(view);
  if (view.state !== lastState) {
    lastState = view.state;
    refreshToday().catch((e) => console.error(e));
  }
}

function connect() {
  const events = new EventSource("/api/console/live");
  events.addEventListener("agent", (event) => {
    $("connection").textContent = "";
    onView(JSON.parse(event.data));
  });
  events.addEventListener("error", () => {
    $("connection").textContent = say("console.offline");
  });
}

document.querySelector(".buttons").addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const body = {action: button.dataset.action};
  if (body.action === "pause") body.reason = $("pause-reason").value;
  try {
    await send("POST", `/api/agents/${encodeURIComponent(agentId)}/state`, body);
  } catch (error) {
    $("connection").textContent = error.message;
  }
});

$("queue-rows").addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-queue-action]");
  if (!button) return;
  const queue = button.closest("tr").dataset.queue;
  try {
    await send("POST", `/api/agents/${encodeURIComponent(agentId)}/state`,
               {action: button.dataset.queueAction, queue});
  } catch (error) {
    $("connection").textContent = error.message;
  }
});

$("wrap-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!wrapCallId) return;
  const form = event.target;
  const ticket = {};
  for (const name of ["category", "urgency", "caller_name", "building", "unit", "room", "description"]) {
    ticket[name] = form.elements[name].value;
  }
  const disposition = form.elements.disposition.value;
  const body = {disposition, ready: form.elements.ready.checked};
  if (ticket.category) body.ticket = ticket;
  try {
    const saved = await send("POST", `/api/console/calls/${encodeURIComponent(wrapCallId)}/wrap-up`, body);
    $("wrap-result").textContent = saved.ticket_number
      ? say("console.saved", {number: saved.ticket_number}) : say("console.saved_no_ticket");
    $("wrap-result").dataset.ticket = saved.ticket_number || "";
  } catch (error) {
    const problems = error.data && error.data.details && error.data.details.problems;
    $("wrap-result").textContent = problems ? JSON.stringify(problems) : error.message;
  }
});

// The browser softphone: when the bundle is built and the agent has a SIP account,
// it registers the agent's WebRTC endpoint; the distributor then rings it
// instead of the desk phone.
function phoneState(state) {
  const node = $("phone-state");
  node.dataset.phone = state;
  node.textContent = say(`console.phone.${state}`);
  $("phone-answer").hidden = state !== "incoming";
  $("phone-hangup").hidden = state !== "incoming" && state !== "connected";
}

async function startSoftphone() {
  let config;
  try {
    config = await send("GET", "/api/console/softphone");
  } catch (error) {
    return;  // no SIP account: desk phone or nothing
  }
  let module;
  try {
    module = await import("/static/build/softphone.js");
  } catch (error) {
    console.warn("softphone not built (scripts/build-web.sh)", error);
    return;
  }
  const phone = new module.Softphone(config, $("phone-audio"));
  phone.addEventListener("state", (e) => phoneState(e.detail.state));
  phone.addEventListener("incoming", () => phoneState("incoming"));
  phone.addEventListener("connected", () => phoneState("connected"));
  phone.addEventListener("ended", () => phoneState("registered"));
  $("phone-answer").addEventListener("click", () => phone.answer());
  $("phone-hangup").addEventListener("click", () => phone.hangup());
  phone.start();
}

connect();
refreshToday().catch((e) => console.error(e));
startSoftphone().catch((e) => console.error(e));
