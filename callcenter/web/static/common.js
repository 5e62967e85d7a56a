// Shared by every page: the CSRF token of the session, and fetch with it.
export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

export async function send(method, url, body) {
  const response = await fetch(url, {
    method,
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrfToken()},
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw Object.assign(new Error(data.message || response.statusText), {data, status: response.status});
  }
  return data;
}

export function strings() {
  const node = document.getElementById("i18n");
  return node ? JSON.parse(node.textContent) : {};
}

// Play [start, end] seconds of a leg's recording (the <audio id="audio-LEG">):
// evidence, transcript lines and timeline marks all jump there.
export function play(leg, start, end) {
  const audio = document.getElementById(`audio-${leg}`);
  if (!audio) return null;
  audio.currentTime = start;
  const playing = audio.play();
  if (playing) playing.catch(() => {});  // a browser that refuses autoplay still seeks
  const stop = () => {
    if (audio.currentTime >= end) {
      audio.pause();
      audio.removeEventListener("timeupdate", stop);
    }
  };
  audio.addEventListener("timeupdate", stop);
  return audio;
}
