/* immune review console: live updates over /ws/reviews/ (no build step, no library).
 *
 * Queue page: any apv.* or decision.made event re-fetches the current queue page and swaps
 * its result table in place (server-rendered, so filters, ordering and permissions stay the
 * server's), highlighting rows that are new; a counter shows pending work by severity.
 * Detail page: announces presence (who else has this APV open) and warns when the APV is
 * decided or changed by someone else while it is open.
 */
(function () {
  "use strict";
  const root = document.getElementById("immune-live");
  if (!root) return;
  const page = root.dataset.page;
  const apvCode = root.dataset.apv || null;
  const state = document.getElementById("live-state");
  const note = document.getElementById("live-note");
  const SEVERITIES = ["critical", "high", "medium", "low", "none", "unknown"];
  let socket = null;
  let retryMs = 1000;
  let refreshTimer = null;
  let heartbeat = null;

  function setState(text, live) {
    if (!state) return;
    state.textContent = text;
    state.classList.toggle("is-live", !!live);
    root.dataset.live = live ? "yes" : "no";
  }

  function showNote(text) {
    if (!note) return;
    note.textContent = text;
    note.hidden = false;
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(scheme + "://" + location.host + root.dataset.wsPath);
    socket.addEventListener("open", function () {
      retryMs = 1000;
      setState("live", true);
      send({ type: "subscribe", channels: ["apvs", "decisions", "stats"] });
      if (page === "detail" && apvCode) {
        send({ type: "presence", apv: apvCode });
        heartbeat = setInterval(function () { send({ type: "presence", apv: apvCode }); }, 30000);
      }
    });
    socket.addEventListener("message", function (event) {
      let message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      handle(message);
    });
    socket.addEventListener("close", function () {
      clearInterval(heartbeat);
      setState("offline, reconnecting…", false);
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
    });
  }

  function handle(message) {
    const data = message.data || {};
    switch (message.type) {
      case "apv.created":
      case "apv.updated":
      case "decision.made":
      case "decision.applied":
        if (page === "queue") scheduleRefresh();
        if (page === "detail" && data.apv === apvCode) {
          if (message.type === "decision.applied") {
            showNote("The " + data.decision + " decision is " +
                     data.outcome.replace(/_/g, " ") + "; reload to see it.");
          } else if (message.type === "decision.made") {
            showNote(data.reviewer + " decided " + data.decision + " (" +
                     data.action_taken.replace(/_/g, " ") + "); reload to see it.");
            document.querySelectorAll(".decision-buttons .button").forEach(function (b) {
              b.classList.add("disabled");
              b.setAttribute("aria-disabled", "true");
            });
          } else if (message.type === "apv.updated") {
            const status = document.getElementById("apv-status");
            if (status) status.textContent = String(data.status).replace(/_/g, " ");
          }
        }
        break;
      case "stats.update":
        renderCounter(data.pending_by_severity || {});
        break;
      case "presence":
        renderPresence(data.viewers || []);
        break;
    }
  }

  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refreshQueue, 250);
  }

  function rowCodes(container) {
    return new Set(Array.from(container.querySelectorAll("a.apv-code")).map(function (a) {
      return a.dataset.apv;
    }));
  }

  function refreshQueue() {
    fetch(location.href, { credentials: "same-origin", headers: { "X-Requested-With": "live" } })
      .then(function (response) { return response.ok ? response.text() : Promise.reject(response.status); })
      .then(function (html) {
        const fresh = new DOMParser().parseFromString(html, "text/html");
        const before = rowCodes(document);
        ["#result_list", ".paginator", "#changelist-filter"].forEach(function (selector) {
          const current = document.querySelector(selector);
          const replacement = fresh.querySelector(selector);
          if (current && replacement) current.replaceWith(replacement);
          else if (current && !replacement && selector === "#result_list") {
            current.querySelector("tbody").innerHTML = "";
          }
        });
        const empty = !fresh.querySelector("#result_list");
        if (empty) showNote("The queue is empty.");
        document.querySelectorAll("a.apv-code").forEach(function (a) {
          if (!before.has(a.dataset.apv)) a.closest("tr").classList.add("is-new");
        });
        refreshCounter();
      })
      .catch(function () { showNote("Live refresh failed; reload the page."); });
  }

  function renderCounter(bySeverity) {
    const counter = document.getElementById("pending-counter");
    if (!counter) return;
    counter.textContent = "";
    SEVERITIES.forEach(function (severity) {
      const n = bySeverity[severity] || 0;
      if (!n) return;
      const badge = document.createElement("span");
      badge.className = "count count-" + severity;
      badge.dataset.severity = severity;
      badge.textContent = severity + " " + n;
      counter.appendChild(badge);
    });
    if (!counter.childElementCount) counter.textContent = "nothing pending";
  }

  function refreshCounter() {
    if (!root.dataset.statsUrl) return;
    fetch(root.dataset.statsUrl, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (stats) { if (stats) renderCounter(stats.pending_by_severity || {}); });
  }

  function renderPresence(viewers) {
    const element = document.getElementById("presence");
    if (!element) return;
    const me = root.dataset.user || "";
    const others = viewers.filter(function (v) { return v !== me; });
    element.textContent = others.length ? "Also viewing: " + others.join(", ") : "";
    element.dataset.viewers = viewers.join(",");
  }

  if (page === "queue") refreshCounter();
  connect();
})();
