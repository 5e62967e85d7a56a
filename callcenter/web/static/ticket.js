// One ticket: its actions go to the ticket API (fetch with the session's CSRF
// token); after each one the page's data is read again (the page itself, its
// #ticket part swapped in place). Errors are shown in words beside the form.
import {send} from "/static/common.js";
import {say, startCountdowns, syncClock} from "/static/countdown.js";
import {showProblem, upload} from "/static/problems.js";

const root = () => document.getElementById("ticket");
const number = root().dataset.number;
const notice = document.getElementById("notice");

function event(type, fields = {}) {
  const body = {type};
  for (const [name, value] of Object.entries(fields)) {
    if (value !== "" && value !== undefined && value !== null) body[name] = value;
  }
  return body;
}

async function uploadAll(files) {
  const ids = [];
  for (const file of files) ids.push((await upload(number, file)).id);
  return ids;
}

// The correct / confirm form (PATCH): the fields changed from what the page
// showed; with "确认无误" also the fields to confirm, as they are (a confirmation
// is stored as a person's value too). The severity only for a complaint.
function edits(form, confirming) {
  const confirm = confirming ? form.dataset.confirm.split(" ").filter(Boolean) : [];
  const complaint = form.elements.category.value === "complaint";
  const body = {};
  for (const control of form.querySelectorAll("[data-value]")) {
    const name = control.name;
    if (name === "complaint_severity" && !complaint) continue;
    const value = control.tagName === "SELECT" ? control.value : control.value.trim();
    if (value === control.dataset.value && !confirm.includes(name)) continue;
    body[name] = name === "complaint_severity" && value === "" ? null : value;
  }
  return body;
}

// What each form sends; the key of what is said when done, if not the action's.
const actions = {
  async edit(form, submitter) {
    const confirming = submitter?.value === "confirm";
    const body = edits(form, confirming);
    if (!Object.keys(body).length) return "unchanged";
    await send("PATCH", `/api/tickets/${encodeURIComponent(number)}`, body);
    return confirming ? "confirm" : "edit";
  },
  async dispatch(form) {
    await post(event("dispatch", {department: form.department.value,
      assignee: form.assignee.value.trim()}));
  },
  async start() {
    await post(event("start"));
  },
  async note(form) {
    await post(event("note", {text: form.text.value}));
  },
  async resolve(form) {
    const chosen = [...form.querySelectorAll("input[name=photo]:checked")].map((c) => c.value);
    const uploaded = await uploadAll(form.photos.files);
    await post({type: "resolve", notes: form.notes.value, photos: [...chosen, ...uploaded]});
  },
  async callback(form) {
    await post(event("callback", {satisfaction: Number(form.satisfaction.value),
      note: form.note.value}));
  },
  async close(form) {
    await post(event("close", {reason: form.reason.value}));
  },
  async reopen(form) {
    await post({type: "reopen", reason: form.reason.value});
  },
  async contacted(form) {
    await post(event("contacted", {note: form.note.value}));
  },
  async assign(form) {
    await post({type: "assign", owner: form.owner.value});
  },
  async upload(form) {
    await uploadAll(form.file.files);
  },
  async acknowledge(form) {
    await send("POST", `/api/tickets/alerts/${encodeURIComponent(form.dataset.alert)}/acknowledge`);
  },
};

function post(body) {
  return send("POST", `/api/tickets/${encodeURIComponent(number)}/events`, body);
}

// Read the page again and put its ticket part in place of ours.
async function refresh() {
  const response = await fetch(location.href, {headers: {Accept: "text/html"},
    credentials: "same-origin"});
  if (!response.ok) throw Object.assign(new Error(response.statusText), {status: response.status});
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = page.getElementById("ticket");
  if (!fresh) return;
  root().replaceWith(document.adoptNode(fresh));
  syncClock(root());
}

document.addEventListener("submit", async (submitted) => {
  const form = submitted.target.closest("form.action[data-action]");
  if (!form || !root().contains(form)) return;
  submitted.preventDefault();
  const action = form.dataset.action;
  const button = submitted.submitter || form.querySelector("button[type=submit]");
  button.disabled = true;
  showProblem(form, null);
  notice.textContent = "";
  let done;
  try {
    done = await actions[action](form, submitted.submitter);
  } catch (error) {
    showProblem(form, error);
    button.disabled = false;
    return;
  }
  notice.textContent = say(`tickets.done.${done || action}`);
  try {
    await refresh();
  } catch {
    notice.textContent = say("tickets.error.refresh");
  }
});

// The complaint severity is asked for a complaint only.
document.addEventListener("change", (changed) => {
  const control = changed.target;
  if (control.name !== "category" || control.form?.id !== "edit-form") return;
  const severity = control.form.querySelector("label[data-field=complaint_severity]");
  if (severity) severity.hidden = control.value !== "complaint";
});

startCountdowns(root());
