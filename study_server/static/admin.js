// The dashboard's live part (#live) is fetched again every data-refresh-s seconds from data-src
// (server-rendered HTML, so numbers are formatted in one place). A served file: the CSP forbids
// inline scripts. When the admin session has ended the fetch lands on the login page: go there
// (it says why; a reload would not, as the redirect already ended the session).
"use strict";
(function () {
  const live = document.getElementById("live");
  if (!live) return;
  const periodMs = Number(live.dataset.refreshS) * 1000;
  async function refresh() {
    try {
      const response = await fetch(live.dataset.src, { cache: "no-store", credentials: "same-origin" });
      if (response.redirected) {
        window.location.assign(response.url);
        return;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      live.innerHTML = await response.text();
      live.classList.remove("stale");
    } catch (error) {
      live.classList.add("stale"); // server or network away for a moment: keep the last figures, try again
    }
    window.setTimeout(refresh, periodMs);
  }
  window.setTimeout(refresh, periodMs);
})();
