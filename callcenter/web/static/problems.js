// What the ticket API refused, in the page's language: the error id's message,
// the details a person can act on (which fields, which statuses), and the error
// id with the HTTP status for whoever helps them. Never the raw response.
import {csrfToken} from "/static/common.js";
import {say} from "/static/countdown.js";

function known(key) {
  return say(key) !== key;
}

function fieldName(field) {
  const name = String(field).split(".")[0];
  return known(`tickets.field.${name}`) ? say(`tickets.field.${name}`) : name;
}

function fieldProblems(fields) {
  return fields.map((f) => {
    const problem = known(`tickets.problem.${f.type}`) ? say(`tickets.problem.${f.type}`)
      : say("tickets.problem.other");
    return say("tickets.problem.field", {field: fieldName(f.field), problem});
  });
}

function statusNames(statuses) {
  return statuses.map((s) => say(`tickets.status.${s}`)).join("、");
}

function detailLines(details) {
  const lines = [];
  if (Array.isArray(details.fields)) lines.push(...fieldProblems(details.fields));
  if (details.status && Array.isArray(details.allowed_from)) {
    lines.push(say("tickets.problem.in_status", {status: statusNames([details.status]),
      allowed: statusNames(details.allowed_from)}));
  }
  if (details.max_bytes) {
    lines.push(say("tickets.problem.max_size", {mb: (details.max_bytes / 1048576).toFixed(1)}));
  }
  if (Array.isArray(details.allowed)) lines.push(say("tickets.problem.allowed_types"));
  if (details.department) lines.push(say("tickets.problem.department", {id: details.department}));
  return lines;
}

// The text shown beside a form for an error thrown by send() or upload().
export function problemText(error) {
  if (error.status === undefined) return say("tickets.error.network");
  const data = error.data || {};
  const id = data.error || "";
  const message = known(`tickets.error.${id}`) ? say(`tickets.error.${id}`)
    : say("tickets.error.other");
  const lines = [message, ...detailLines(data.details || {})];
  lines.push(say("tickets.error.code", {error: id || "-", status: error.status}));
  return lines.join("\n");
}

export function showProblem(form, error) {
  const node = form.querySelector(".problem");
  if (!node) return;
  node.textContent = error ? problemText(error) : "";
  node.hidden = !error;
}

// One file to a ticket (multipart, one part named file), with the CSRF token.
export async function upload(number, file) {
  const body = new FormData();
  body.append("file", file, file.name);
  const response = await fetch(`/api/tickets/${encodeURIComponent(number)}/attachments`, {
    method: "POST", body, credentials: "same-origin",
    headers: {"X-CSRF-Token": csrfToken()},
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw Object.assign(new Error(data.message || response.statusText),
      {data, status: response.status});
  }
  return data;
}
