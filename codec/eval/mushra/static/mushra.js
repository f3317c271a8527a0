// MUSHRA listening page (ITU-R BS.1534-3): one trial at a time, scores saved per trial.
// The page knows conditions only by opaque ids; the server maps them back to names.
"use strict";

(() => {
  const LISTENER_KEY = "codec-mushra-listener";
  const FADE_SECONDS = 0.005; // a short cross-fade keeps switching instant but click-free
  const $ = (id) => document.getElementById(id);

  const state = {
    listener: null,
    trials: [], // per trial: { conditions: [opaque id, ...] } in display order
    done: new Set(), // indices of the trials already saved
    index: -1, // the trial on screen
    referencePlayed: false,
  };
  let context = null; // one AudioContext for the page's lifetime
  let player = null;

  // ---- server ------------------------------------------------------------------------

  async function api(path, body) {
    const response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(data.error || `the server answered ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  function applyView(view) {
    state.listener = view.listener;
    state.trials = view.trials;
    state.done = new Set(view.done);
  }

  // ---- playback: every stimulus runs in sync; switching only changes gains ----------

  class Player {
    constructor(audio, buffers) {
      this.audio = audio;
      this.buffers = buffers; // Map key -> AudioBuffer, all the same length
      this.duration = Math.min(...[...buffers.values()].map((b) => b.duration));
      this.sources = [];
      this.gains = new Map();
      this.current = null;
      this.offset = 0; // seconds into the stimuli where playback (re)starts
      this.startedAt = null; // context time at which `offset` plays; null when stopped
      this.loop = true;
      this.onchange = () => {};
    }

    get playing() {
      return this.startedAt !== null;
    }

    position() {
      if (!this.playing) return this.offset;
      const t = Math.max(0, this.offset + this.audio.currentTime - this.startedAt);
      return this.loop ? t % this.duration : Math.min(t, this.duration);
    }

    play(key) {
      this.audio.resume();
      if (this.playing) {
        this.switchTo(key);
      } else {
        this.start(key);
      }
      this.onchange();
    }

    start(key) {
      const when = this.audio.currentTime + 0.01;
      if (this.offset >= this.duration) this.offset = 0;
      this.current = key;
      for (const [k, buffer] of this.buffers) {
        const source = this.audio.createBufferSource();
        source.buffer = buffer;
        source.loop = this.loop;
        const gain = this.audio.createGain();
        gain.gain.value = k === key ? 1 : 0;
        source.connect(gain).connect(this.audio.destination);
        source.start(when, this.offset);
        this.sources.push(source);
        this.gains.set(k, gain);
      }
      this.sources[0].onended = () => {
        this.halt();
        this.offset = 0;
        this.onchange();
      };
      this.startedAt = when;
    }

    switchTo(key) {
      const now = this.audio.currentTime;
      for (const [k, gain] of this.gains) {
        gain.gain.cancelScheduledValues(now);
        gain.gain.setValueAtTime(gain.gain.value, now);
        gain.gain.linearRampToValueAtTime(k === key ? 1 : 0, now + FADE_SECONDS);
      }
      this.current = key;
    }

    stop() {
      this.offset = this.position();
      this.halt();
      this.onchange();
    }

    halt() {
      for (const source of this.sources) {
        source.onended = null;
        source.stop();
        source.disconnect();
      }
      this.sources = [];
      this.gains.clear();
      this.startedAt = null;
    }

    restartAt(seconds) {
      const key = this.current;
      const wasPlaying = this.playing;
      if (wasPlaying) this.halt();
      this.offset = Math.min(Math.max(0, seconds), this.duration);
      if (wasPlaying) this.start(key);
      this.onchange();
    }

    setLoop(loop) {
      const at = this.position();
      this.loop = loop;
      this.restartAt(at);
    }
  }

  function audioContext() {
    if (context === null) context = new AudioContext();
    return context;
  }

  async function loadBuffers(index, keys) {
    const audio = audioContext();
    const load = async (key) => {
      const url = `/audio/${encodeURIComponent(state.listener)}/${index}/${key}`;
      const response = await fetch(url);
      if (!response.ok) throw new Error(`could not load a sound (${response.status})`);
      return [key, await audio.decodeAudioData(await response.arrayBuffer())];
    };
    return new Map(await Promise.all(keys.map(load)));
  }

  // ---- pages -------------------------------------------------------------------------

  function show(section) {
    for (const id of ["start", "trial", "finish"]) $(id).hidden = id !== section;
    document.body.dataset.state = section;
  }

  function message(text) {
    $("message").textContent = text || "";
  }

  async function begin(name) {
    applyView(await api("/api/session", { listener: name }));
    localStorage.setItem(LISTENER_KEY, name);
    $("listener-name").textContent = name;
    await next();
  }

  async function next() {
    const index = state.trials.findIndex((_, i) => !state.done.has(i));
    if (index < 0) {
      stopPlayer();
      $("finish-count").textContent = String(state.trials.length);
      show("finish");
    } else {
      await showTrial(index);
    }
  }

  function stopPlayer() {
    if (player !== null && player.playing) player.halt();
    player = null;
  }

  async function showTrial(index) {
    stopPlayer();
    state.index = index;
    state.referencePlayed = false;
    document.body.dataset.ready = "false";
    const ids = state.trials[index].conditions;
    $("progress").textContent = `Trial ${state.done.size + 1} of ${state.trials.length}`;
    $("conditions").replaceChildren(...ids.map(conditionColumn));
    $("position").value = 0;
    show("trial");
    updateControls();
    let buffers;
    try {
      buffers = await loadBuffers(index, ["reference", ...ids]);
    } catch (error) {
      message(`${error.message}; reload the page to try again`);
      return;
    }
    if (state.index !== index) return; // the listener moved on while this loaded
    player = new Player(audioContext(), buffers);
    player.loop = $("loop").checked;
    player.onchange = updateControls;
    document.body.dataset.ready = "true";
    updateControls();
  }

  function conditionColumn(cid, i) {
    const column = document.createElement("div");
    column.className = "condition";
    const value = document.createElement("output");
    value.className = "value";
    value.textContent = "–";
    const slider = document.createElement("input");
    Object.assign(slider, { type: "range", min: 0, max: 100, step: 1, value: 0 });
    slider.className = "slider";
    slider.dataset.cid = cid;
    slider.dataset.moved = "false";
    slider.setAttribute("aria-label", `Score of sound ${letter(i)}`);
    slider.addEventListener("input", () => {
      slider.dataset.moved = "true";
      value.textContent = slider.value;
      updateControls();
    });
    const button = document.createElement("button");
    Object.assign(button, { type: "button", className: "play", textContent: letter(i) });
    button.dataset.key = cid;
    button.addEventListener("click", () => play(cid));
    column.append(value, slider, button);
    return column;
  }

  function letter(i) {
    return String.fromCharCode(65 + i);
  }

  function play(key) {
    if (player === null) return;
    if (key === "reference") state.referencePlayed = true;
    player.play(key);
  }

  function sliders() {
    return [...document.querySelectorAll("#conditions .slider")];
  }

  function updateControls() {
    const ready = player !== null;
    for (const button of document.querySelectorAll("#trial .play")) {
      button.disabled = !ready;
      const playing = ready && player.playing && player.current === button.dataset.key;
      button.classList.toggle("active", playing);
    }
    $("stop").disabled = !ready;
    $("stop").textContent = ready && player.playing ? "Stop" : "Play";
    const unrated = sliders().filter((s) => s.dataset.moved !== "true").length;
    let hint = "";
    if (!ready) hint = "Loading the sounds…";
    else if (!state.referencePlayed) hint = "Listen to the reference first.";
    else if (unrated > 0) hint = `Rate every sound: ${unrated} not rated yet.`;
    $("hint").textContent = hint;
    $("submit").disabled = hint !== "";
  }

  async function submitTrial() {
    const index = state.index;
    $("submit").disabled = true;
    document.body.dataset.ready = "false"; // saving: the trial takes no more input
    const scores = Object.fromEntries(sliders().map((s) => [s.dataset.cid, Number(s.value)]));
    try {
      const played = state.referencePlayed;
      const body = { listener: state.listener, trial: index, scores, reference_played: played };
      applyView(await api("/api/submit", body));
      message("");
      await next();
    } catch (error) {
      message(`Not saved: ${error.message}`);
      document.body.dataset.ready = "true";
      if (error.status === 409) await begin(state.listener); // saved elsewhere: resync
      else updateControls();
    }
  }

  function forgetListener() {
    stopPlayer();
    localStorage.removeItem(LISTENER_KEY);
    state.listener = null;
    state.index = -1;
    $("listener").value = "";
    show("start");
  }

  function animatePosition() {
    if (player !== null && player.playing && document.activeElement !== $("position")) {
      $("position").value = Math.round((1000 * player.position()) / player.duration);
    }
    requestAnimationFrame(animatePosition);
  }

  function onKey(event) {
    const typing = event.target.tagName === "INPUT" && event.target.type === "text";
    if (state.index < 0 || $("trial").hidden || typing) return;
    const ids = state.trials[state.index].conditions;
    if (event.key === "r" || event.key === "R") {
      play("reference");
    } else if (/^[1-9]$/.test(event.key) && Number(event.key) <= ids.length) {
      play(ids[Number(event.key) - 1]);
    } else if (event.key === " " && player !== null) {
      event.preventDefault();
      if (player.playing) player.stop();
      else play(player.current || "reference");
    }
  }

  function wire() {
    $("start-form").addEventListener("submit", (event) => {
      event.preventDefault();
      message("");
      begin($("listener").value.trim()).catch((error) => message(error.message));
    });
    $("play-reference").addEventListener("click", () => play("reference"));
    $("stop").addEventListener("click", () => {
      if (player === null) return;
      if (player.playing) player.stop();
      else play(player.current || "reference");
    });
    $("loop").addEventListener("change", () => player && player.setLoop($("loop").checked));
    $("position").addEventListener("input", () => {
      if (player !== null) player.restartAt((player.duration * $("position").value) / 1000);
    });
    $("submit").addEventListener("click", submitTrial);
    $("switch-listener").addEventListener("click", forgetListener);
    $("another-listener").addEventListener("click", forgetListener);
    document.addEventListener("keydown", onKey);
    requestAnimationFrame(animatePosition);
  }

  async function init() {
    wire();
    const saved = localStorage.getItem(LISTENER_KEY);
    if (saved) {
      try {
        await begin(saved);
        return;
      } catch (error) {
        message(error.message);
        localStorage.removeItem(LISTENER_KEY);
      }
    }
    show("start");
  }

  init();
})();
