// elderwatch console: the ticket list keeps itself up to date by polling its fragment.
// Robust on a phone: pauses while the tab is hidden, backs off when offline, sends the list's
// ETag so an unchanged list costs a 304, and goes to the sign-in page when the session ends.
(function () {
  "use strict";
  var live = document.querySelector("[data-poll]");
  if (!live) { return; }
  var url = live.getAttribute("data-poll");
  var interval = parseInt(live.getAttribute("data-interval"), 10) || 3000;
  var target = live.querySelector(".poll-target");
  var status = live.querySelector(".live-status");
  var etag = null, failures = 0, timer = null, busy = false;

  function say(text, offline) {
    if (!status) { return; }
    status.textContent = text;
    status.className = "live-status" + (offline ? " offline" : "");
  }
  function schedule(ms) { clearTimeout(timer); timer = setTimeout(poll, ms); }
  function succeeded() {
    failures = 0;
    var now = new Date();
    say(live.getAttribute("data-updated") + " " + now.toTimeString().slice(0, 8), false);
    schedule(interval);
  }
  function failed() {
    failures += 1;
    say(live.getAttribute("data-offline"), true);
    schedule(Math.min(30000, interval * Math.pow(2, Math.min(failures, 4))));
  }
  function poll() {
    if (document.hidden) { schedule(interval); return; }
    if (busy) { return; }
    busy = true;
    var headers = {"Accept": "text/html"};
    if (etag) { headers["If-None-Match"] = etag; }
    fetch(url, {credentials: "same-origin", cache: "no-store", headers: headers, redirect: "manual"})
      .then(function (response) {
        if (response.status === 401 || response.type === "opaqueredirect") {
          window.location.href = "/signin?next=" + encodeURIComponent(window.location.pathname);
          return;
        }
        if (response.status === 304) { succeeded(); return; }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        etag = response.headers.get("ETag");
        return response.text().then(function (html) {
          target.innerHTML = html;
          succeeded();
        });
      })
      .catch(failed)
      .then(function () { busy = false; });
  }
  document.addEventListener("visibilitychange", function () { if (!document.hidden) { schedule(0); } });
  window.addEventListener("online", function () { schedule(0); });
  schedule(interval);
})();
