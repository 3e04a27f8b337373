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
  // replace, not assign: the steps leave no history entries for Back to return to
  if (status === 200 && data.next) { window.location.replace(data.next); return true; }
  // 409: the step was taken already (its reply was lost and this was the retry, or another
  // tab took it): open the page of where the participant is now instead of a dead end
  // 410: the session timed out; /study shows the time-out page
  if (status === 409 || status === 410) { window.location.replace("/study"); return true; }
  showError(data.error || "Something went wrong.");
  return false;
}

// A phone, or a touch screen without any mouse or trackpad (a tablet; an iPad reports a desktop
// browser, so only the missing fine pointer gives it away): the study needs a computer.
function touchOnly() {
  return /Mobi|Android|iPhone|iPad/i.test(navigator.userAgent)
    || (navigator.maxTouchPoints > 0 && !window.matchMedia("(any-pointer: fine)").matches);
}

// Ending the study is for good: every button that does it asks once more, in a dialog whose
// default (Escape, or Enter on the focused button) is to go back.
function confirmEnd(text) {
  const dialog = $("confirm-end"), yes = $("confirm-yes"), no = $("confirm-no");
  $("confirm-text").textContent = text;
  return new Promise((resolve) => {
    const done = (answer) => {
      yes.onclick = no.onclick = dialog.oncancel = null;
      dialog.close();
      resolve(answer);
    };
    yes.onclick = () => done(true);
    no.onclick = () => done(false);
    dialog.oncancel = (event) => { event.preventDefault(); done(false); };
    dialog.showModal();
    no.focus();
  });
}

const END_TEXTS = {
  decline: "You chose not to take part. This ends the study for good: you cannot come back to it later.",
  window: "This ends the study for good: you cannot come back to it later, and you will be asked to return it on Prolific.",
  computer: "This ends the study for good: you cannot continue later on a computer, and you will be asked to return it on Prolific.",
};

// The end of a study session: another step, then the page of where the participant is now.
async function endStudy(url, text) {
  if (await confirmEnd(text)) await step(url, {});
}

function newId() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// ---------------------------------------------------------------- images
// At most 4 downloads at once; each image retried with back-off; decoded before use.
const imageCache = new Map();
const DECODE_WAIT_MS = 2000;
let activeLoads = 0;
const loadQueue = [];

// decode() lets the trial clock start on a painted image, but a browser may reject it for an image
// that loaded fine (Safari under memory pressure) or settle it late: a loaded image is used anyway,
// after at most DECODE_WAIT_MS. Only a failed download rejects (and is retried).
async function fetchImage(src) {
  const img = new Image();
  const loaded = new Promise((resolve, reject) => { img.onload = resolve; img.onerror = reject; });
  img.src = src;
  await loaded;
  await Promise.race([img.decode().catch(() => {}), sleep(DECODE_WAIT_MS)]);
  return img;
}

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
          try { resolve(await fetchImage(attempt ? `${url}?retry=${attempt}` : url)); return; }
          catch (e) { await sleep(300 * 2 ** attempt); }
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
// One answer per key press: a held key's auto-repeat (event.repeat) never answers, and after a
// press no digit key answers until that key is released. Between two trials a fixation cross
// stays at least data-inter-trial-ms; the next trial is only asked for after it, so the server's
// clock (GET /api/trial to the answer) does not include it.
function trialsPage() {
  const interTrialMs = Number(document.body.dataset.interTrialMs) || 0;
  const minWidth = Number(document.body.dataset.minWidth), minHeight = Number(document.body.dataset.minHeight);
  let trial = null;
  let shownAt = null;   // performance.now() when every image is on screen
  let blurs = 0, fullscreenExits = 0;
  let heldKey = null;   // the digit key pressed last, until its keyup
  let onEnter = null;   // what Enter does now (the feedback's and pause page's buttons)
  const buttons = Array.from(document.querySelectorAll(".answers button"));

  window.addEventListener("blur", () => { heldKey = null; if (shownAt !== null) blurs++; });
  document.addEventListener("fullscreenchange", () => {
    if (!document.fullscreenElement && shownAt !== null) fullscreenExits++;
  });
  document.addEventListener("keydown", (event) => {
    if (!$("window-overlay").hidden || $("confirm-end").open) return;  // their own buttons take the keys
    if (event.key === "Enter" && onEnter && !event.repeat) { event.preventDefault(); onEnter(); return; }
    const index = "123456".indexOf(event.key);
    if (index < 0 || event.key.length !== 1 || event.repeat) return;
    const released = heldKey === null;
    heldKey = event.key;
    if (released) buttons[index].click();
  });
  document.addEventListener("keyup", (event) => { if (event.key === heldKey) heldKey = null; });
  // a digit key clicks the button from code (event.detail 0); a mouse click or tap counts its clicks
  buttons.forEach((button) => button.addEventListener("click", (event) => {
    if (shownAt !== null && fits()) answer(button.dataset.side, Number(button.dataset.confidence), event.detail ? "pointer" : "key");
  }));

  function setButtons(enabled) { buttons.forEach((b) => { b.disabled = !enabled || !fits(); }); }

  // The window rule, on every trial: below the minimum size, or on a touch-only device, an overlay
  // covers the trial and no answer is taken (the server refuses one too) until the window fits.
  const computer = !touchOnly();
  function fits() { return computer && window.innerWidth >= minWidth && window.innerHeight >= minHeight; }
  function checkWindow() {
    const ok = fits();
    $("overlay-size").textContent = `${window.innerWidth}×${window.innerHeight}`;
    if (ok === $("window-overlay").hidden) return;
    $("window-overlay").hidden = ok;
    if (ok && shownAt !== null) shownAt = performance.now();  // the trial is seen anew: its clock restarts
    setButtons(shownAt !== null);
  }
  $("overlay-enlarge").hidden = !computer;
  $("overlay-computer").hidden = computer;
  $("overlay-give-up").textContent = computer ? "I cannot enlarge my window" : "I cannot use a computer";
  onClick("overlay-give-up", () => endStudy("/api/trials/give-up", END_TEXTS[computer ? "window" : "computer"]));
  window.addEventListener("resize", checkWindow);
  checkWindow();

  function show(id) {  // one of the board's views: the trial, the fixation cross, the pause page
    for (const view of ["trial", "fixation", "pause"]) $(view).hidden = view !== id;
  }

  function place(slot, img, alt) {
    const copy = img.cloneNode();
    copy.alt = alt;
    copy.id = slot.id;
    slot.replaceWith(copy);
  }

  function waitForButton(button) {  // resolves on a click or Enter
    return new Promise((resolve) => {
      const go = () => { onEnter = null; button.removeEventListener("click", go); resolve(); };
      onEnter = go;
      button.addEventListener("click", go);
      button.focus();
    });
  }

  async function pause(kind, progress) {
    const texts = {
      main: ["The real trials start now",
             `Practice is over. Now come ${progress.total} trials like the practice ones, without feedback. ` +
             "Answer as accurately as you can."],
      break: ["Time for a short break",
              `You have done ${progress.done} of ${progress.total} trials. Rest a moment, then continue when you are ready.`],
    };
    [$("pause-title").textContent, $("pause-text").textContent] = texts[kind];
    $("pause-continue").textContent = kind === "main" ? "Start the real trials" : "Continue";
    show("pause");
    await waitForButton($("pause-continue"));
  }

  async function next(resume) {
    setButtons(false);
    shownAt = null;
    show("fixation");
    const slow = setTimeout(() => { $("loading").hidden = false; }, 1500);
    const {status, data} = await getJSON(resume ? "/api/trial?resume=1" : "/api/trial");
    if (status === 410) { window.location.replace("/study"); return; }  // timed out
    if (status !== 200) { clearTimeout(slow); showError(data.error || "Something went wrong."); return; }
    if (data.done) { window.location.replace(data.next); return; }
    trial = data.trial;
    $("phase").textContent = trial.practice ? `Practice round ${trial.practice_round}:` : "";
    // a pause or break page says itself how far the participant is; the corner names a trial only on one
    const pausing = trial.pause && !resume;
    $("progress").textContent = pausing ? "" : `trial ${trial.progress.done + 1} of ${trial.progress.total}`;
    const urls = [trial.base, trial.left, trial.right, ...trial.references];
    const loading = Promise.all(urls.map(loadImage));
    loading.catch(() => {});
    if (pausing) {
      clearTimeout(slow); $("loading").hidden = true;
      await pause(trial.pause, trial.progress);
      return next(true);  // the server's clock starts again now
    }
    let images;
    try { images = await loading; } catch (e) {
      clearTimeout(slow);
      showError("Images could not be loaded: please check your connection and reload the page.");
      return;
    }
    clearTimeout(slow);
    $("loading").hidden = true;
    place($("base"), images[0], "original photo");
    place($("left"), images[1], "left copy");
    place($("right"), images[2], "right copy");
    const grid = $("references");
    if (grid) grid.replaceChildren(...images.slice(3).map((img) => { const c = img.cloneNode(); c.alt = "image that excites the unit"; return c; }));
    show("trial");
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
    if (status === 410) { window.location.replace("/study"); return new Promise(() => {}); }  // timed out
    if (status !== 200) { showError(data.error || "Something went wrong."); await sleep(2500); showError(""); return data; }
    return data;
  }

  async function answer(side, confidence, input) {
    const rt = performance.now() - shownAt;
    shownAt = null;  // one answer per trial, whatever else is pressed before the reply
    setButtons(false);
    const blank = sleep(interTrialMs);
    const body = {
      answer_id: newId(), position: trial.position, chosen_side: side, confidence: confidence,
      rt_ms: Math.round(rt * 10) / 10, window_width: window.innerWidth, window_height: window.innerHeight,
      device_pixel_ratio: window.devicePixelRatio || 1, blur_count: blurs, fullscreen_exit_count: fullscreenExits,
      webdriver: navigator.webdriver === true, input: input,  // signals for the researcher (study_server/speed.py)
    };
    const reply = await send(body);
    if (reply.feedback) await feedback(reply.feedback, side);
    if (reply.next === "page") { window.location.replace("/study"); return; }
    show("fixation");
    await (reply.feedback ? sleep(interTrialMs) : blank);
    await next(false);
  }

  async function feedback(result, chosen) {
    const favoured = result.correct_side;
    const figure = $(`${favoured}-choice`);
    const messages = {
      repeat: " Not every practice answer was right, so another practice round follows.",
      passed: " That was the last practice trial.",
      continue: " That was the last practice trial.",
    };
    $("feedback-text").innerHTML = "";
    const verdict = document.createElement("strong");
    verdict.textContent = result.correct ? "Correct." : "Not correct.";
    $("feedback-text").append(verdict, ` You chose the ${chosen} copy; the unit responds more strongly to the ` +
      `${favoured} one (outlined in green).` + (messages[result.round_result] || ""));
    $("feedback").className = result.correct ? "right" : "wrong";
    figure.classList.add("favoured");
    document.querySelector(".answers").hidden = true;
    $("feedback").hidden = false;
    await waitForButton($("feedback-next"));
    figure.classList.remove("favoured");
    $("feedback").hidden = true;
    document.querySelector(".answers").hidden = false;
  }

  (async () => {
    const pending = localStorage.getItem(PENDING_KEY);
    if (pending) await send(JSON.parse(pending));  // an answer from before a reload or a lost reply
    await next(false);
  })();
}

// ---------------------------------------------------------------- other pages
// The pages' step buttons are rendered disabled and enabled here, once their handler is attached:
// a click before study.js has run (slow download, busy machine) would otherwise do nothing.
function onClick(id, handler) {
  const button = $(id);
  button.addEventListener("click", handler);
  button.disabled = false;
}

// A phone is asked to open the same link on a computer (the participant goes on there); only
// "I cannot" returns the study.
function devicePage() {
  const body = document.body;
  const minWidth = Number(body.dataset.minWidth), minHeight = Number(body.dataset.minHeight);
  const update = () => { $("window-size").textContent = `${window.innerWidth}×${window.innerHeight}`; };
  update();
  window.addEventListener("resize", update);
  const isPhone = touchOnly();
  const refused = (phone) => {
    $("phone-help").hidden = !phone;
    $("give-up").textContent = phone ? "I cannot use a computer" : "I cannot enlarge my window";
    $("give-up-help").hidden = false;
  };
  if (isPhone) { refused(true); $("check").hidden = true; }
  onClick("check", async () => {
    const small = window.innerWidth < minWidth || window.innerHeight < minHeight;
    const ok = await step("/api/device", {window_width: window.innerWidth, window_height: window.innerHeight, is_phone: isPhone});
    if (!ok) refused(isPhone || !small);  // refused with a large window: the server saw a phone
  });
  onClick("give-up", () => endStudy("/api/device/give-up", END_TEXTS[$("phone-help").hidden ? "window" : "computer"]));
}

// Back would leave the study (or show a stale step): it stays on the page and says so.
function guardBackButton() {
  history.pushState({study: true}, "", window.location.href);
  window.addEventListener("popstate", () => {
    history.pushState({study: true}, "", window.location.href);
    $("back-notice").hidden = false;
    setTimeout(() => { $("back-notice").hidden = true; }, 6000);
  });
}

const pages = {
  consent() {
    onClick("agree", () => step("/api/consent", {agree: true}));
    onClick("decline", async () => {
      if (await confirmEnd(END_TEXTS.decline)) await step("/api/consent", {agree: false});
    });
  },
  device: devicePage,
  instructions() { onClick("start", () => step("/api/instructions", {})); },
  trials: trialsPage,
  comment() {
    onClick("finish", (event) => {
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

if (document.body.dataset.page !== "message") guardBackButton();
(pages[document.body.dataset.page] || (() => {}))();
