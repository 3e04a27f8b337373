// The participant's pages. Plain browser JavaScript, no build step, no CDN.
// Every step is a JSON POST; answers are kept in localStorage until the
// server acknowledges them, and retried with back-off.
"use strict";

// one kept answer per participant: a second Prolific id in this browser never sends the first one's
const PENDING_KEY = `maco-study-pending-answer:${document.body.dataset.participant || ""}`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const $ = (id) => document.getElementById(id);

function showError(text) {
  const box = $("error");
  box.textContent = text;
  box.hidden = !text;
}

// Fetch JSON; network errors, 5xx and 429 (too many requests) are retried with back-off
// (for ever: the participant's answer must not be lost; a 429 waits at least its
// Retry-After), other 4xx are returned to the caller.
async function fetchJSON(url, options, problem) {
  for (let attempt = 0; ; attempt++) {
    let wait = Math.min(8000, 250 * 2 ** attempt);
    let message = attempt >= 2 ? problem : "";
    try {
      const response = await fetch(url, {credentials: "same-origin", ...options});
      if (response.status === 429) {
        wait = Math.max(wait, 1000 * Math.min(60, Number(response.headers.get("Retry-After")) || 1));
        message = "Please wait a moment: the page goes on by itself (your answers are kept).";
      } else if (response.status < 500) {
        showError("");
        return {status: response.status, data: await response.json()};
      }
    } catch (e) { /* network error: retry */ }
    if (message) showError(message);
    await sleep(wait);
  }
}

function postJSON(url, body) {
  return fetchJSON(url, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)},
                   "Connection problem: retrying… (your answers are kept)");
}

function getJSON(url) {
  return fetchJSON(url, {}, "Connection problem: retrying…");
}

// Post a step and go where the server says; show its message on refusal.
async function step(url, body) {
  const {status, data} = await postJSON(url, body);
  if (status === 200 && data.next) { window.location.assign(data.next); return true; }
  // 409: the step was taken already (its reply was lost and this was the retry, or another
  // tab took it): open the page of where the participant is now instead of a dead end
  if (status === 409) { window.location.assign("/study"); return true; }
  showError(data.error || "Something went wrong.");
  return false;
}

function newId() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// ---------------------------------------------------------------- images
// At most 4 downloads at once; each image retried with back-off; decoded before use.
const imageCache = new Map();
let activeLoads = 0;
const loadQueue = [];

function runQueue() {
  while (activeLoads < 4 && loadQueue.length) {
    const job = loadQueue.shift();
    activeLoads++;
    job().finally(() => { activeLoads--; runQueue(); });
  }
}

function loadImage(url) {
  if (!imageCache.has(url)) {
    const promise = new Promise((resolve, reject) => {
      loadQueue.push(async () => {
        for (let attempt = 0; attempt < 6; attempt++) {
          const img = new Image();
          img.src = attempt ? `${url}?retry=${attempt}` : url;
          try { await img.decode(); resolve(img); return; } catch (e) { await sleep(300 * 2 ** attempt); }
        }
        imageCache.delete(url);
        reject(new Error(`image ${url} failed`));
      });
      runQueue();
    });
    imageCache.set(url, promise);
  }
  return imageCache.get(url);
}

// ---------------------------------------------------------------- trials
function trialsPage() {
  let trial = null;
  let shownAt = null;   // performance.now() when every image is on screen
  let blurs = 0, fullscreenExits = 0;
  let busy = true;
  const buttons = Array.from(document.querySelectorAll(".answers button"));

  window.addEventListener("blur", () => { if (shownAt !== null) blurs++; });
  document.addEventListener("fullscreenchange", () => {
    if (!document.fullscreenElement && shownAt !== null) fullscreenExits++;
  });
  document.addEventListener("keydown", (event) => {
    const index = "123456".indexOf(event.key);
    if (index >= 0 && event.key.length === 1) buttons[index].click();
  });
  buttons.forEach((button) => button.addEventListener("click", () => {
    if (!busy && shownAt !== null) answer(button.dataset.side, Number(button.dataset.confidence));
  }));

  function setButtons(enabled) { busy = !enabled; buttons.forEach((b) => { b.disabled = !enabled; }); }

  function place(slot, img, alt) {
    const copy = img.cloneNode();
    copy.alt = alt;
    copy.id = slot.id;
    slot.replaceWith(copy);
  }

  async function show() {
    setButtons(false);
    shownAt = null;
    $("trial").hidden = true;
    $("loading").hidden = false;
    const {status, data} = await getJSON("/api/trial");
    if (status !== 200) { showError(data.error || "Something went wrong."); return; }
    if (data.done) { window.location.assign(data.next); return; }
    trial = data.trial;
    $("phase").textContent = trial.practice ? `Practice round ${trial.practice_round}` : "Trial";
    $("progress").textContent = `${trial.progress.done + 1} / ${trial.progress.total}`;
    const urls = [trial.base, trial.left, trial.right, ...trial.references];
    let images;
    try { images = await Promise.all(urls.map(loadImage)); } catch (e) {
      showError("Images could not be loaded: please check your connection and reload the page.");
      return;
    }
    place($("base"), images[0], "original photo");
    place($("left"), images[1], "left choice");
    place($("right"), images[2], "right choice");
    const grid = $("references");
    grid.replaceChildren(...images.slice(3).map((img) => { const c = img.cloneNode(); c.alt = "reference"; return c; }));
    grid.hidden = trial.references.length === 0;
    $("loading").hidden = true;
    $("trial").hidden = false;
    // the clock starts once the decoded images have been painted
    requestAnimationFrame(() => requestAnimationFrame(() => {
      shownAt = performance.now();
      blurs = 0; fullscreenExits = 0;
      setButtons(true);
    }));
    trial.preload.forEach((url) => loadImage(url).catch(() => {}));
  }

  async function send(body) {
    localStorage.setItem(PENDING_KEY, JSON.stringify(body));
    const {status, data} = await postJSON("/api/answer", body);
    localStorage.removeItem(PENDING_KEY);  // acknowledged (or refused for good)
    if (status !== 200) { showError(data.error || "Something went wrong."); await sleep(1500); showError(""); return data; }
    return data;
  }

  async function answer(side, confidence) {
    setButtons(false);
    const rt = performance.now() - shownAt;
    const body = {
      answer_id: newId(), position: trial.position, chosen_side: side, confidence: confidence,
      rt_ms: Math.round(rt * 10) / 10, window_width: window.innerWidth, window_height: window.innerHeight,
      device_pixel_ratio: window.devicePixelRatio || 1, blur_count: blurs, fullscreen_exit_count: fullscreenExits,
    };
    const reply = await send(body);
    if (reply.feedback) await feedback(reply.feedback);
    if (reply.next === "page") { window.location.assign("/study"); return; }
    await show();
  }

  async function feedback(result) {
    const box = $("feedback");
    const messages = {
      repeat: " Some practice answers were wrong: the practice starts again.",
      passed: " Practice done: the real trials start now, without feedback.",
      continue: " The real trials start now, without feedback.",
    };
    box.textContent = (result.correct ? "Correct!" : `Wrong: the ${result.correct_side} image was the right answer.`)
      + (messages[result.round_result] || "");
    box.className = result.correct ? "right" : "wrong";
    box.hidden = false;
    await sleep(result.round_result ? 2500 : 1200);
    box.hidden = true;
  }

  (async () => {
    const pending = localStorage.getItem(PENDING_KEY);
    if (pending) await send(JSON.parse(pending));  // an answer from before a reload or a lost reply
    await show();
  })();
}

// ---------------------------------------------------------------- other pages
function devicePage() {
  const body = document.body;
  const minWidth = Number(body.dataset.minWidth), minHeight = Number(body.dataset.minHeight);
  const update = () => { $("window-size").textContent = `${window.innerWidth}×${window.innerHeight}`; };
  update();
  window.addEventListener("resize", update);
  const isPhone = /Mobi|Android|iPhone|iPad/i.test(navigator.userAgent)
    || (navigator.maxTouchPoints > 0 && Math.min(screen.width, screen.height) < 600);
  $("check").addEventListener("click", async () => {
    const ok = await step("/api/device", {window_width: window.innerWidth, window_height: window.innerHeight, is_phone: isPhone});
    if (!ok && (window.innerWidth < minWidth || window.innerHeight < minHeight)) $("give-up").hidden = false;
  });
  $("give-up").addEventListener("click", () => step("/api/device/give-up", {}));
}

const pages = {
  consent() {
    $("agree").addEventListener("click", () => step("/api/consent", {agree: true}));
    $("decline").addEventListener("click", () => step("/api/consent", {agree: false}));
  },
  device: devicePage,
  instructions() { $("start").addEventListener("click", () => step("/api/instructions", {})); },
  trials: trialsPage,
  comment() {
    $("finish").addEventListener("click", (event) => {
      event.target.disabled = true;
      step("/api/complete", {comment: $("comment").value}).then((ok) => { event.target.disabled = ok; });
    });
  },
  done() {
    // only reached once the server has stored every answer and the completion
    const url = document.body.dataset.completionUrl;
    if (url) setTimeout(() => window.location.assign(url), 1500);
  },
};

(pages[document.body.dataset.page] || (() => {}))();
