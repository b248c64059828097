// plr console: live updates without a build step. The server renders every fragment (escaped);
// this file only fetches fresh fragments when /events says the queue or the audit logs changed,
// and counts down expiry times. No inline script anywhere (the CSP forbids it).
//
// A click must only ever answer the request the approver saw under the pointer:
// - pending requests are listed oldest first, so a new one is added below the others;
// - while the pointer or the focus is in the approvals list, nothing in it moves: a new request
//   is only appended at the end, and any other change (a request answered elsewhere or expired)
//   waits until the pointer and focus leave the list (a note at the bottom says what waits);
// - after any change of the list (and when the page loads), Approve and Deny answer nothing for a
//   second (SETTLE_MS), so a click already on its way lands on nothing: a time, not a state of
//   the buttons, so a refresh that brings fresh buttons keeps the hold, and the buttons are not
//   `disabled` (which would throw the keyboard's focus out of the list): a capturing listener
//   stops every click and submit in the list until the time is up, and the buttons look held.
// Without this script every form still posts the id of the request it was rendered in.
(function () {
  "use strict";

  var SETTLE_MS = 1000;
  var seq = {};            // section id -> number of the newest fetch; an older answer is dropped
  var deferred = false;    // an approvals update waits for the pointer and focus to leave the list
  var pointerIn = false;
  var settleTimer = null;
  var settleUntil = 0;     // Date.now() before which no decision in the list is sent

  function load(section) {
    var url = section.getAttribute("data-fragment");
    if (!url) return null;
    var n = (seq[section.id] || 0) + 1;
    seq[section.id] = n;
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (html) { return seq[section.id] === n ? html : null; });
  }

  function fragment(section) {
    if (section.id === "approvals") return approvals(section);
    // a half-typed filter or an open record must not vanish under the human's cursor
    var active = document.activeElement;
    if (active && section.contains(active) && active.tagName === "INPUT" && active.value) return;
    var open = Array.prototype.map.call(section.querySelectorAll("details[open]"), function (d) {
      return d.id || (d.closest("[id]") || {}).id;
    });
    var p = load(section);
    if (!p) return;
    p.then(function (html) {
      if (html === null) return;
      section.innerHTML = html;
      reopen(open);
      tick();
    }).catch(function (e) { status("could not refresh: " + e.message); });
  }

  function reopen(ids) {
    ids.forEach(function (id) {
      if (!id) return;
      var el = document.getElementById(id);
      var d = el && (el.tagName === "DETAILS" ? el : el.querySelector("details"));
      if (d) d.open = true;
    });
  }

  // --- approvals ---------------------------------------------------------------------------

  function ids(root) {
    return Array.prototype.map.call(root.querySelectorAll("article.request[data-id]"), function (a) {
      return a.getAttribute("data-id");
    });
  }

  function inside(section) {
    var active = document.activeElement;
    return pointerIn || section.matches(":hover") ||
      !!(active && active !== document.body && section.contains(active));
  }

  function held() { return Date.now() < settleUntil; }

  function mark(section) {
    // the buttons show the hold (the listener below is what enforces it)
    var on = held();
    section.querySelectorAll("form.decide button:not([hidden])").forEach(function (b) {
      if (b.disabled) return; // disabled by the server (arguments not all shown): stays so
      b.classList.toggle("settling", on);
      if (on) {
        b.setAttribute("aria-disabled", "true");
        b.title = "the list just changed: read it again";
      } else {
        b.removeAttribute("aria-disabled");
        b.removeAttribute("title");
      }
    });
  }

  function settle(section) {
    // the list just changed: no button answers anything until the human has seen it a moment
    settleUntil = Date.now() + SETTLE_MS;
    mark(section);
    clearTimeout(settleTimer);
    settleTimer = setTimeout(function () { mark(section); }, SETTLE_MS + 20);
  }

  function guard(section) {
    function stop(e) {
      if (!held() || !(e.target instanceof Element) || !e.target.closest("form.decide")) return;
      e.preventDefault();
      e.stopImmediatePropagation();
    }
    section.addEventListener("click", stop, true);
    section.addEventListener("submit", stop, true);
  }

  function notes(root) {
    var kept = {};
    root.querySelectorAll("article.request[data-id] input[name=note]").forEach(function (i) {
      if (i.value) kept[i.closest("article").getAttribute("data-id")] = i.value;
    });
    return kept;
  }

  function restoreNotes(root, kept) {
    root.querySelectorAll("article.request[data-id] input[name=note]").forEach(function (i) {
      var v = kept[i.closest("article").getAttribute("data-id")];
      if (v) i.value = v;
    });
  }

  function say(text) {
    var box = document.getElementById("queue-changed");
    if (!box) return;
    box.textContent = text;
    box.hidden = !text;
  }

  function plural(n, one, many) { return n + " " + (n === 1 ? one : many); }

  function approvals(section) {
    var p = load(section);
    if (!p) return;
    p.then(function (html) {
      if (html === null) return;
      var next = document.createElement("template");
      next.innerHTML = html;
      var now = ids(section);
      var then = ids(next.content);
      var prefix = now.every(function (id, i) { return id === then[i]; });
      var same = prefix && now.length === then.length;
      if (!inside(section)) {
        var kept = notes(section);
        var open = Array.prototype.map.call(section.querySelectorAll("details[open]"), function (d) {
          return d.id || (d.closest("[id]") || {}).id;
        });
        section.innerHTML = html;
        restoreNotes(section, kept);
        reopen(open);
        deferred = false;
        say("");
        if (!same) settle(section);
        else mark(section); // fresh buttons: a hold in progress goes on
        tick();
        return;
      }
      // the pointer or the focus is in the list: what is under it stays where it is
      var list = section.querySelector("#pending-list");
      var nextList = next.content.querySelector("#pending-list");
      if (prefix && list && nextList) {
        if (!same) {
          if (now.length === 0) list.textContent = "";
          then.slice(now.length).forEach(function (id) {
            var a = nextList.querySelector('article.request[data-id="' + CSS.escape(id) + '"]');
            if (a) list.appendChild(a);
          });
          settle(section);
        }
        mark(section);
        [["pending-head", "textContent"], ["answered", "innerHTML"]].forEach(function (part) {
          var mine = section.querySelector("#" + part[0]);
          var theirs = next.content.querySelector("#" + part[0]);
          if (mine && theirs) mine[part[1]] = theirs[part[1]];
        });
        deferred = false;
        say("");
        tick();
        return;
      }
      deferred = true;
      var added = then.filter(function (id) { return now.indexOf(id) < 0; }).length;
      var gone = now.filter(function (id) { return then.indexOf(id) < 0; }).length;
      var what = [];
      if (added) what.push(plural(added, "new request", "new requests"));
      if (gone) what.push(plural(gone, "request answered or expired", "requests answered or expired"));
      say((what.length ? what.join(", ") : "The queue changed") +
        ": the list updates when the pointer leaves it (and nothing in it has the focus)");
    }).catch(function (e) { status("could not refresh: " + e.message); });
  }

  function watchApprovals(section) {
    function left() {
      setTimeout(function () {
        if (deferred && !inside(section)) approvals(section);
      }, 50);
    }
    section.addEventListener("mouseenter", function () { pointerIn = true; });
    section.addEventListener("mouseleave", function () { pointerIn = false; left(); });
    section.addEventListener("focusout", left);
  }

  // --- the rest ----------------------------------------------------------------------------

  function signedOut() {
    // the session ended (idle, its lifetime, a sign-out elsewhere): nothing on this page can be
    // decided any more, so it says so and offers the way back rather than "reconnecting…" for ever
    status("signed out: the session ended");
    var live = document.getElementById("live");
    if (live && !document.getElementById("sign-in-again")) {
      var a = document.createElement("a");
      a.id = "sign-in-again";
      a.href = "/login";
      a.textContent = " sign in again";
      live.parentNode.insertBefore(a, live.nextSibling);
    }
    document.querySelectorAll("form button").forEach(function (b) { b.disabled = true; });
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
    es.onerror = function () {
      if (es.readyState !== 2) { status("reconnecting…"); return; }
      // closed for good: the browser does not retry a refused stream (401: the session ended)
      fetch("/fragments/approvals", { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) {
          if (r.status === 401) signedOut();
          else { status("reconnecting…"); setTimeout(connect, 2000); }
        })
        .catch(function () { status("reconnecting…"); setTimeout(connect, 2000); });
    };
    ["approvals", "audit"].forEach(function (name) {
      es.addEventListener(name, function () {
        var section = document.getElementById(name);
        if (section) fragment(section);
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var section = document.getElementById("approvals");
    if (section) {
      watchApprovals(section);
      guard(section);
      settle(section); // a page just loaded (after a decision, the list moved up): a moment first
    }
    tick();
    setInterval(tick, 1000);
    // the sign-in page has nothing live to show (its stream would be refused: not signed in)
    if (!document.querySelector('form[action="/login"]')) connect();
  });
})();
