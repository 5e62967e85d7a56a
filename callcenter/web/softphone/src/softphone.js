// The browser softphone of the agent console: registers the agent's WebRTC
// endpoint (<user>-web) with Asterisk over secure websocket and answers the
// calls the distributor offers. Credentials come from /api/console/softphone
// (the account's digest HA1, never a password). Events for the page:
// "state" (registered / unregistered / failed), "incoming", "connected", "ended".
import JsSIP from "jssip";

export class Softphone extends EventTarget {
  constructor(config, audio) {
    super();
    this.config = config;
    this.audio = audio;
    this.session = null;
    JsSIP.debug.disable("JsSIP:*");
    const socket = new JsSIP.WebSocketInterface(config.ws_url);
    this.ua = new JsSIP.UA({
      sockets: [socket],
      uri: config.uri,
      authorization_user: config.authorization_user,
      ha1: config.ha1,
      realm: config.realm,
      display_name: config.display_name,
      register: true,
      register_expires: 120,
      session_timers: false,
      user_agent: "callcenter-console",
    });
    this.ua.on("registered", () => this.emit("state", {state: "registered"}));
    this.ua.on("unregistered", () => this.emit("state", {state: "unregistered"}));
    this.ua.on("registrationFailed", (e) => this.emit("state", {state: "failed", cause: e.cause}));
    this.ua.on("disconnected", () => this.emit("state", {state: "unregistered"}));
    this.ua.on("newRTCSession", (e) => this.onSession(e));
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, {detail}));
  }

  start() {
    this.ua.start();
  }

  onSession({session, originator}) {
    if (originator !== "remote") return;
    if (this.session) {
      session.terminate({status_code: 486});  // one call at a time
      return;
    }
    this.session = session;
    session.on("peerconnection", ({peerconnection}) => this.attach(peerconnection));
    session.on("confirmed", () => this.emit("connected", {}));
    const done = (cause) => {
      this.session = null;
      this.audio.srcObject = null;
      this.emit("ended", {cause});
    };
    session.on("ended", (e) => done(e.cause));
    session.on("failed", (e) => done(e.cause));
    const from = session.remote_identity;
    this.emit("incoming", {number: from.uri.user, name: from.display_name});
  }

  attach(peerconnection) {
    peerconnection.addEventListener("track", (event) => {
      this.audio.srcObject = event.streams[0];
      this.audio.play().catch(() => {});
    });
  }

  answer() {
    if (!this.session) return;
    this.session.answer({mediaConstraints: {audio: true, video: false}});
    const pc = this.session.connection;
    if (pc) this.attach(pc);
  }

  hangup() {
    if (this.session) this.session.terminate();
  }
}
