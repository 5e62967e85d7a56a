// Evidence and transcript lines play their span of the leg's recording.
function play(leg, start, end) {
  const audio = document.getElementById(`audio-${leg}`);
  if (!audio) return;
  audio.currentTime = start;
  audio.play();
  const stop = () => {
    if (audio.currentTime >= end) {
      audio.pause();
      audio.removeEventListener("timeupdate", stop);
    }
  };
  audio.addEventListener("timeupdate", stop);
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button.ev");
  if (!button) return;
  play(button.dataset.leg, Number(button.dataset.start), Number(button.dataset.end));
});
