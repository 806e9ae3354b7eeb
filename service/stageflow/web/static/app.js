// Stageflow dashboard: a little plain JavaScript, no build step and nothing from a CDN.
// 1. Flag switches commit at once: the cell's form is posted in the background and the cell is
//    replaced by the server's new one (state and short revision). Without JS the form posts.
// 2. Pages that change by themselves ([data-refresh]: a promotion, the pipeline, a stage) follow
//    the dashboard's event stream ([data-events]: SSE from the event-stream server, signed in by
//    the session cookie). Each event is a notice: the page asks for its part again
//    (If-None-Match, starting from the tag the page came with: [data-etag]) and swaps it in when
//    it changed. While the stream is out of reach (none named, no EventSource, or it errs or
//    closes) the page asks by itself every [data-poll] seconds instead (a part may ask for its
//    own period: a waiting promotion's is a second), not while the page is hidden, and says so
//    in its [data-status] element; once the stream opens again it stops asking.
(function () {
  "use strict";
  var FRAGMENT = { "X-Fragment": "1" };
  var SPACING = 500; // ms at least between two requests of a page for its part

  function say(text) {
    var status = document.getElementById("flag-status");
    if (status) status.textContent = text;
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.hasAttribute || !form.hasAttribute("data-fragment")) return;
    event.preventDefault();
    var cell = form.closest("td");
    var button = form.querySelector("button");
    if (button) button.disabled = true;
    fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers: FRAGMENT,
      credentials: "same-origin",
    }).then(function (response) {
      return response.text().then(function (text) {
        if (!response.ok) throw new Error(text || "HTTP " + response.status);
        var holder = document.createElement("tbody");
        holder.innerHTML = "<tr>" + text + "</tr>";
        var fresh = holder.querySelector("td");
        cell.replaceWith(fresh);
        var sw = fresh.querySelector("button");
        if (sw) {
          sw.focus();
          say(sw.getAttribute("aria-label") + " is " + (sw.getAttribute("aria-checked") === "true" ? "ON" : "OFF"));
        }
      });
    }).catch(function (error) {
      if (button) button.disabled = false;
      var why = document.createElement("span");
      why.className = "why small";
      why.setAttribute("role", "alert");
      why.textContent = error.message;
      cell.appendChild(why);
    });
  });

  // Follow one part of the page: ask for it again and swap it in when it changed.
  function follow(holder) {
    var url = holder.getAttribute("data-refresh");
    var etag = holder.getAttribute("data-etag"); // the part as the page was rendered with it
    var busy = false; // a request in flight
    var again = false; // an event arrived meanwhile: ask once more when it is back
    var deferred = false; // waiting for the reader to leave a field of the part

    function typing() {
      var active = document.activeElement;
      return active && holder.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName);
    }

    function refresh(done) {
      if (busy || deferred) {
        again = again || busy;
        if (done) done(true);
        return;
      }
      if (typing()) { // never under the reader's cursor: once they leave the field
        deferred = true;
        holder.addEventListener("focusout", function () { deferred = false; refresh(); }, { once: true });
        if (done) done(true);
        return;
      }
      busy = true;
      var headers = { "X-Fragment": "1" };
      if (etag) headers["If-None-Match"] = etag;
      function finish(ok) {
        if (done) done(ok);
        // Events that came meanwhile: one more request for all of them, and not sooner than
        // SPACING after this one (a busy pipeline would otherwise keep a worker rendering).
        setTimeout(function () {
          busy = false;
          if (again) {
            again = false;
            refresh();
          }
        }, SPACING);
      }
      fetch(url, { headers: headers, credentials: "same-origin", cache: "no-store" })
        .then(function (response) {
          if (response.status === 304) return null;
          if (!response.ok) throw new Error("HTTP " + response.status);
          etag = response.headers.get("ETag");
          return response.text();
        })
        .then(function (html) {
          if (html !== null) holder.innerHTML = html;
          finish(true);
        })
        .catch(function () { finish(false); });
    }

    // The fallback while the stream is out of reach: ask every period, longer after failures.
    var status = document.getElementById(holder.getAttribute("data-status") || "");
    var fallback = false; // the stream is out of reach
    var timer = null; // the next ask
    var failures = 0; // asks in a row that got no part

    function period() { // seconds; a part's own [data-poll] before the page's; 0: never
      var own = holder.querySelector("[data-poll]");
      return Number((own || holder).getAttribute("data-poll")) || 0;
    }
    function tell(seconds) { // say it only when degraded; a status region speaks on change only
      var text = "";
      if (fallback) {
        text = "Live updates paused — " + (!seconds ? "reload the page to see changes"
          : "refreshing " + (seconds === 1 ? "each second" : "every " + seconds + " s"));
      }
      if (status && status.textContent !== text) status.textContent = text;
    }
    function schedule() {
      if (timer !== null) clearTimeout(timer);
      timer = null;
      var seconds = period();
      tell(seconds);
      if (!fallback || !seconds || document.visibilityState === "hidden") return;
      // A dashboard that does not answer is asked less often: twice the wait after each
      // failure, up to 15 s (or the period, when longer).
      var wait = seconds * 1000 * Math.pow(2, failures);
      timer = setTimeout(tick, Math.min(wait, Math.max(15000, seconds * 1000)));
    }
    function tick() {
      timer = null;
      refresh(function (ok) {
        failures = ok ? 0 : Math.min(failures + 1, 5);
        schedule();
      });
    }
    function degrade() { // idempotent: a retrying EventSource errs again on every attempt
      if (fallback) return;
      fallback = true;
      schedule();
    }
    function recover() { // the stream replays what was missed (after=, Last-Event-ID)
      fallback = false;
      failures = 0;
      schedule();
    }
    document.addEventListener("visibilitychange", function () {
      if (!fallback) return;
      // Hidden: no asks (schedule() clears the timer). Back in sight: what changed meanwhile
      // at once, then every period again.
      if (document.visibilityState === "hidden") schedule();
      else tick();
    });

    var stream = holder.getAttribute("data-events");
    if (!stream || !window.EventSource) {
      degrade();
      return;
    }
    var source = new EventSource(stream, { withCredentials: true });
    holder.setAttribute("data-stream", "connecting");
    source.onopen = function () {
      holder.setAttribute("data-stream", "open");
      recover();
    };
    source.onmessage = function () { refresh(); }; // a notice: what changed is asked for
    source.onerror = function () { // out of reach: the browser tries again (Last-Event-ID)
      holder.setAttribute("data-stream", source.readyState === EventSource.CLOSED ? "closed" : "retrying");
      degrade();
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    var holders = document.querySelectorAll("[data-refresh]");
    for (var i = 0; i < holders.length; i++) follow(holders[i]);
  });
})();
