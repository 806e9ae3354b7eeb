// Stageflow dashboard: a little plain JavaScript, no build step and nothing from a CDN.
// 1. Flag switches commit at once: the cell's form is posted in the background and the cell is
//    replaced by the server's new one (state and short revision). Without JS the form posts.
// 2. A waiting promotion's page asks the server again (If-None-Match) and swaps in the new part
//    when it changed, until the promotion settles.
(function () {
  "use strict";
  var FRAGMENT = { "X-Fragment": "1" };

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

  function poll(holder) {
    var url = holder.getAttribute("data-poll");
    var etag = null;
    var delay = 1000;
    function again() {
      var headers = { "X-Fragment": "1" };
      if (etag) headers["If-None-Match"] = etag;
      fetch(url, { headers: headers, credentials: "same-origin", cache: "no-store" })
        .then(function (response) {
          if (response.status === 304) return null;
          if (!response.ok) throw new Error("HTTP " + response.status);
          etag = response.headers.get("ETag");
          return response.text();
        })
        .then(function (html) {
          if (html !== null) {
            holder.innerHTML = html;
            if (!holder.querySelector("[data-live]")) {
              holder.removeAttribute("data-poll");
              return; // settled: nothing more will change by itself
            }
          }
          setTimeout(again, delay);
        })
        .catch(function () {
          delay = Math.min(delay * 2, 15000);
          setTimeout(again, delay);
        });
    }
    setTimeout(again, delay);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var holder = document.querySelector("[data-poll]");
    if (holder) poll(holder);
  });
})();
