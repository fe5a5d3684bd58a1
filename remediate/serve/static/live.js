// serve's page, live: one EventSource on /events says which incidents changed; when one this page shows did, the
// page's #live part is fetched again and put in place (no reload, no framework). The approve and deny forms are sent
// with fetch, and the flash says what happened: the incident's progress as serve recorded it, or the refusal.
"use strict";
(function () {
  const live = () => document.getElementById("live");
  let waiting = false; // a refresh put off while someone types in a form

  function shown() {
    const stamps = {};
    for (const el of document.querySelectorAll("[data-incident][data-stamp]")) {
      stamps[el.dataset.incident] = el.dataset.stamp;
    }
    return stamps;
  }

  function typing() {
    const region = live();
    return region !== null && Array.from(region.querySelectorAll("input:not([type=hidden]), textarea"))
      .some((el) => el.value !== "");
  }

  function concerns(news) {
    const region = live();
    if (region === null) return false;
    const have = shown();
    const scope = region.dataset.scope;
    if (scope === "all") {
      return String(news.paused) !== region.dataset.paused ||
        Object.keys(news.stamps).some((id) => have[id] !== news.stamps[id]);
    }
    return scope in news.stamps && have[scope] !== news.stamps[scope];
  }

  async function refresh(always) {
    if (!always && typing()) { waiting = true; return; }
    waiting = false;
    const response = await fetch(location.pathname + location.search,
      { headers: { Accept: "text/html" }, credentials: "same-origin", cache: "no-store" });
    if (!response.ok) return;
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.getElementById("live");
    const region = live();
    if (fresh !== null && region !== null) region.replaceWith(document.adoptNode(fresh));
  }

  function say(text, refused) {
    const flash = document.getElementById("flash");
    if (flash === null) return;
    flash.textContent = text;
    flash.classList.toggle("refused", refused);
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("decide")) return;
    event.preventDefault();
    const number = form.dataset.incident;
    const action = form.dataset.action;
    say(action + " #" + number + ": sent…", false);
    let response;
    try {
      response = await fetch(form.action, { method: "POST", body: new URLSearchParams(new FormData(form)),
        credentials: "same-origin", headers: { Accept: "application/json" } });
    } catch (e) {
      say(action + " #" + number + " not sent: " + e, true);
      return;
    }
    if (!response.ok) {
      let reason = response.status + " " + response.statusText;
      try { reason = (await response.json()).error || reason; } catch (e) { /* not JSON: the status says it */ }
      say(action + " #" + number + " refused: " + reason, true);
      return;
    }
    await refresh(true);
    const progress = document.getElementById("progress-" + number);
    say("#" + number + ": " + (progress ? progress.textContent.trim() : action + " recorded"), false);
  });

  document.addEventListener("input", () => { if (waiting && !typing()) refresh(false); });

  if (window.EventSource && live() !== null) {
    const source = new EventSource("/events");
    source.onmessage = (event) => {
      const news = JSON.parse(event.data);
      if (waiting || concerns(news)) refresh(false);
    };
  }
})();
