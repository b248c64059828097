// plr console: live updates without a build step. The server renders every fragment (escaped);
// this file only fetches fresh fragments when /events says the queue or the audit logs changed,
// and counts down expiry times. No inline script anywhere (the CSP forbids it).
(function () {
  "use strict";

  function fragment(section) {
    var url = section.getAttribute("data-fragment");
    if (!url) return;
    // a half-typed note or an open record must not vanish under the human's cursor
    var active = document.activeElement;
    if (active && section.contains(active) && active.tagName === "INPUT" && active.value) return;
    var open = Array.prototype.map.call(section.querySelectorAll("details[open]"), function (d) {
      return d.id || (d.closest("[id]") || {}).id;
    });
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (html) {
        section.innerHTML = html;
        open.forEach(function (id) {
          if (!id) return;
          var el = document.getElementById(id);
          var d = el && (el.tagName === "DETAILS" ? el : el.querySelector("details"));
          if (d) d.open = true;
        });
        tick();
      })
      .catch(function (e) { status("could not refresh: " + e.message); });
  }

  function status(text) {
    var live = document.getElementById("live");
    if (live) live.textContent = text;
  }

  function span(s) {
    s = Math.max(0, s);
    if (s < 120) return Math.round(s) + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    return Math.round(s / 3600) + " h";
  }

  function tick() {
    var now = Date.now() / 1000;
    document.querySelectorAll("[data-expires]").forEach(function (el) {
      var left = parseFloat(el.getAttribute("data-expires")) - now;
      el.textContent = left > 0 ? "expires in " + span(left) : "expired";
    });
  }

  function connect() {
    if (!window.EventSource) return;
    var es = new EventSource("/events");
    es.onopen = function () {
      status("live");
      // what changed between rendering this page and (re)opening the stream is fetched now
      ["approvals", "audit"].forEach(function (name) {
        var section = document.getElementById(name);
        if (section) fragment(section);
      });
    };
    es.onerror = function () { status("reconnecting…"); };
    ["approvals", "audit"].forEach(function (name) {
      es.addEventListener(name, function () {
        var section = document.getElementById(name);
        if (section) fragment(section);
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    tick();
    setInterval(tick, 1000);
    connect();
  });
})();
