// The QA call page: evidence, transcript lines and timeline marks play their span;
// the playhead follows the players; verdicts, appeals and decisions go through the
// QA API (with the session's CSRF token), then the page is read again.
import {play, send, strings} from "./common.js";

const page = document.getElementById("qa-call");
const text = strings();

document.addEventListener("click", (event) => {
  const target = event.target.closest(".ev");
  if (!target) return;
  play(target.dataset.leg, Number(target.dataset.start), Number(target.dataset.end));
});

function followPlayhead() {
  const timeline = document.getElementById("timeline");
  const head = document.getElementById("playhead");
  if (!timeline || !head) return;
  for (const audio of document.querySelectorAll("audio")) {
    audio.addEventListener("timeupdate", () => {
      if (!audio.duration) return;
      const x = (1000 * audio.currentTime / audio.duration).toFixed(1);
      head.setAttribute("x1", x);
      head.setAttribute("x2", x);
    });
  }
}

function say(message, failed) {
  const box = document.getElementById("qa-message");
  if (!box) return;
  box.textContent = message;
  box.className = failed ? "error" : "notice";
}

async function submit(form, url, body) {
  for (const button of form.querySelectorAll("button")) button.disabled = true;
  try {
    await send("POST", url, body);
    say(text["qa.saved"] || "OK", false);
    window.location.reload();
  } catch (error) {
    say(`${text["qa.error"] || "Error"}: ${error.message}`, true);
    for (const button of form.querySelectorAll("button")) button.disabled = false;
  }
}

if (page) {
  const call = encodeURIComponent(page.dataset.call);
  followPlayhead();
  page.addEventListener("submit", (event) => {
    const form = event.target;
    event.preventDefault();
    const data = new FormData(form, event.submitter);
    if (form.classList.contains("verdict-form")) {
      submit(form, `/api/qa/calls/${call}/rules/${form.dataset.rule}/verdict`,
             {action: data.get("action"), comment: data.get("comment") || ""});
    } else if (form.classList.contains("appeal-form")) {
      submit(form, `/api/qa/calls/${call}/rules/${form.dataset.rule}/appeal`,
             {reason: data.get("reason") || ""});
    } else if (form.classList.contains("decision-form")) {
      submit(form, `/api/qa/appeals/${form.dataset.appeal}/decision`,
             {upheld: data.get("upheld") === "true", comment: data.get("comment") || ""});
    }
  });
}
