// SLA countdowns of the ticket pages: every [data-due] element counts down once a
// second in the browser, from the server's time when the page was made
// (data-now on the page's root): no polling of the server. The words are the
// same as the server's first rendering (web/ticket_view.py: countdown).
import {strings} from "/static/common.js";

const t = strings();
let offsetMs = 0;  // server clock minus this browser's clock

export function say(key, values = {}) {
  return Object.entries(values).reduce(
    (text, [name, value]) => text.replaceAll(`{${name}}`, String(value)), t[key] || key);
}

export function syncClock(root) {
  const serverNow = Date.parse(root.dataset.now || "");
  offsetMs = Number.isNaN(serverNow) ? 0 : serverNow - Date.now();
}

function duration(seconds) {
  const days = Math.floor(seconds / 86400);
  const hours = Math.floor((seconds % 86400) / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  const secs = seconds % 60;
  const two = (n) => String(n).padStart(2, "0");
  if (days) return say("tickets.duration.days", {d: days, h: hours});
  if (hours) return say("tickets.duration.hours", {h: hours, m: two(minutes)});
  return say("tickets.duration.minutes", {m: minutes, s: two(secs)});
}

export function countdownText(dueMs, nowMs) {
  const leftS = Math.floor((dueMs - nowMs) / 1000);
  if (leftS > 0) return {text: say("tickets.remaining", {time: duration(leftS)}), late: false};
  const lateMin = Math.max(1, Math.floor(-leftS / 60));
  return {text: say("tickets.overdue_by", {minutes: lateMin}), late: true};
}

function tick() {
  const now = Date.now() + offsetMs;
  for (const node of document.querySelectorAll(".countdown[data-due]")) {
    const due = Date.parse(node.dataset.due);
    if (Number.isNaN(due)) continue;
    const {text, late} = countdownText(due, now);
    if (node.textContent !== text) node.textContent = text;
    node.classList.toggle("late", late);
  }
}

export function startCountdowns(root) {
  syncClock(root);
  tick();
  setInterval(tick, 1000);
}
