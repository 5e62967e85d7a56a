// The ticket list: filters stay in the URL (empty ones left out), deadlines
// count down, and a walk-in or online ticket is opened through the ticket API.
import {send} from "/static/common.js";
import {startCountdowns} from "/static/countdown.js";
import {showProblem} from "/static/problems.js";

const page = document.getElementById("tickets-page");

document.getElementById("filters").addEventListener("submit", (event) => {
  for (const field of event.target.elements) {
    if (field.name && field.value.trim() === "") field.disabled = true;  // not sent
  }
});

window.addEventListener("pageshow", () => {  // back from a ticket: the form usable again
  for (const field of document.getElementById("filters").elements) field.disabled = false;
});

function newTicket(form) {
  const body = {};
  for (const [name, value] of new FormData(form).entries()) {
    const text = String(value).trim();
    if (text !== "") body[name] = text;
  }
  return body;
}

const form = document.getElementById("new-ticket-form");
if (form) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    showProblem(form, null);
    try {
      const ticket = await send("POST", "/api/tickets", newTicket(form));
      location.assign(`/tickets/${encodeURIComponent(ticket.number)}`);
    } catch (error) {
      showProblem(form, error);
      button.disabled = false;
    }
  });
}

startCountdowns(page);
