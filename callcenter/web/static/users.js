// Admins manage users: add, reset a password (shown once), disable or enable.
import {send, strings} from "/static/common.js";

const t = strings();
const notice = document.getElementById("notice");

function show(text) {
  notice.textContent = text;
}

function newPassword(password) {
  return t["users.new_password"].replace("{password}", password);
}

document.getElementById("users").addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const id = button.closest("tr").dataset.user;
  const action = button.dataset.action;
  const body = action === "reset" ? {password: null} : {disabled: action === "disable"};
  try {
    const result = await send("PATCH", `/api/users/${id}`, body);
    if (result.password) show(newPassword(result.password));
    else location.reload();
  } catch (error) {
    show(error.message);
  }
});

document.getElementById("add-user").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = Object.fromEntries(form.entries());
  if (!body.agent_id) delete body.agent_id;
  try {
    const result = await send("POST", "/api/users", body);
    show(newPassword(result.password));
  } catch (error) {
    show(error.message);
  }
});
