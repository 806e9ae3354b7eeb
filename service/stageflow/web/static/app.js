// Stageflow dashboard: a little plain JavaScript, no build step and nothing from a CDN.
// 1. Flag switches commit at once: the cell's form is posted in the background and the cell is
//    replaced by the server's new one (state and short revision). Without JS the form posts.
// 2. Pages that change by themselves ([data-refresh]: a promotion, the pipeline, a stage) follow
//    the dashboard's event stream ([data-events]: SSE from the event-stream server, signed in by
//    the session cookie). Each event is a notice: the page asks for its part again
//    (If-None-Match) and swaps it in when it changed. While the stream is out of reach, a
//    waiting promotion ([data-poll]) asks each second instead, until it settles.
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
    var etag = null;
    var busy = false; // a request in flight
    var again = false; // an event arrived meanwhile: ask once more when it is back
    var deferred = false; // waiting for the reader to leave a field of the part
    var polling = null; // the fallback's timer
    var delay = 1000;

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

    // The fallback, as before the stream: a waiting promotion asks each second until it settles.
    function waiting() {
      return holder.hasAttribute("data-poll") && holder.querySelector("[data-live]") !== null;
    }
    function tick() {
      refresh(function (ok) {
        delay = ok ? 1000 : Math.min(delay * 2, 15000);
        polling = polling !== null && waiting() ? setTimeout(tick, delay) : null;
      });
    }
    function poll() {
      if (polling === null && waiting()) polling = setTimeout(tick, delay);
    }
    function stopPolling() {
      if (polling !== null) clearTimeout(polling);
      polling = null;
    }

    var stream = holder.getAttribute("data-events");
    if (!stream || !window.EventSource) {
      poll();
      return;
    }
    var source = new EventSource(stream, { withCredentials: true });
    holder.setAttribute("data-stream", "connecting");
    source.onopen = function () {
      holder.setAttribute("data-stream", "open");
      stopPolling();
    };
    source.onmessage = function () { refresh(); }; // a notice: what changed is asked for
    source.onerror = function () { // out of reach: the browser tries again (Last-Event-ID)
      holder.setAttribute("data-stream", source.readyState === EventSource.CLOSED ? "closed" : "retrying");
      poll();
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    var holders = document.querySelectorAll("[data-refresh]");
    for (var i = 0; i < holders.length; i++) follow(holders[i]);
  });
})();
