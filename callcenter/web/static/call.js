// Evidence and transcript lines play their span of the leg's recording.
import {play} from "./common.js";

document.addEventListener("click", (event) => {
  const button = event.target.closest("button.ev");
  if (!button) return;
  play(button.dataset.leg, Number(button.dataset.start), Number(button.dataset.end));
});
