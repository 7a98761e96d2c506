// Waymark dashboard: progressive enhancement only. Every page works without this script.
// - forms with data-confirm ask in a <dialog> instead of the server's confirm page;
// - the live feed page polls /ui/feed/events every 2 s and adds the new events on top.
// Text from the server is only ever set with textContent, never parsed as HTML.
"use strict";

(function () {
  function confirmForms() {
    var dialog = document.getElementById("confirm-dialog");
    if (!dialog || typeof dialog.showModal !== "function") {
      return; // no <dialog>: the server's confirm page does the asking
    }
    var question = dialog.querySelector(".confirm-question");
    var fields = dialog.querySelector(".confirm-fields");
    var pending = null;

    function row(label, text) {
      var wrap = document.createElement("div");
      var dt = document.createElement("dt");
      var dd = document.createElement("dd");
      dt.textContent = label;
      dd.textContent = text;
      wrap.appendChild(dt);
      wrap.appendChild(dd);
      fields.appendChild(wrap);
    }

    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (form.elements.confirmed.value === "yes") {
          return;
        }
        event.preventDefault();
        pending = form;
        question.textContent = form.dataset.confirm;
        fields.replaceChildren();
        var state = form.elements.state;
        if (state && state.selectedIndex >= 0) {
          row("state", state.options[state.selectedIndex].textContent);
        }
        row("reason", form.elements.reason.value);
        dialog.returnValue = "";
        dialog.showModal();
      });
    });

    dialog.addEventListener("close", function () {
      var form = pending;
      pending = null;
      if (form && dialog.returnValue === "confirm") {
        form.elements.confirmed.value = "yes";
        form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
        form.submit();
      }
    });
  }

  function liveFeed() {
    var rows = document.getElementById("feed-rows");
    if (!rows) {
      return;
    }
    var source = rows.dataset.source;
    var after = rows.dataset.after || "0";
    var status = document.getElementById("feed-status");
    var toggle = document.getElementById("feed-toggle");
    var empty = document.getElementById("feed-empty");
    var paused = false;
    var timer = null;
    var MAX_ROWS = 500;

    function when(at) {
      // as the server writes it: 2025-01-01 12:00:00 UTC
      return /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d.*Z$/.test(at) ? at.slice(0, 10) + " " + at.slice(11, 19) + " UTC" : at;
    }

    function cell(tr, text, className) {
      var td = document.createElement("td");
      if (className) {
        td.className = className;
      }
      if (text !== null && text !== undefined) {
        td.textContent = String(text);
      }
      tr.appendChild(td);
      return td;
    }

    function badge(td, text, prefix) {
      var span = document.createElement("span");
      span.className = "badge " + prefix + String(text).toLowerCase().replace(/[^a-z0-9-]/g, "");
      span.textContent = String(text);
      td.appendChild(span);
    }

    function add(item) {
      var tr = document.createElement("tr");
      tr.className = "fresh";
      var time = document.createElement("time");
      time.dateTime = item.time || "";
      time.title = item.time || "";  // the full value on hover, as on the server's pages
      time.textContent = when(item.time || "");
      cell(tr, null, "nowrap").appendChild(time);
      badge(cell(tr, null), item.type, "type-");
      var link = document.createElement("a");
      link.className = "mono";
      link.href = item.href;
      link.textContent = item.subject;
      cell(tr, null).appendChild(link);
      cell(tr, item.workflowId || "");
      var moved = item.previousState && item.previousState !== item.newState;
      cell(tr, (moved ? item.previousState + " \u2192 " : "") + (item.newState || ""), "mono");
      var statusCell = cell(tr, null);
      if (item.newStatus) {
        badge(statusCell, item.newStatus, "status-");
      }
      cell(tr, item.sequence, "num");
      rows.insertBefore(tr, rows.firstChild);
    }

    function say(text) {
      status.textContent = text;
    }

    function schedule() {
      clearTimeout(timer);
      if (!paused) {
        timer = setTimeout(poll, 2000);
      }
    }

    function poll() {
      fetch(source + "?after=" + encodeURIComponent(after), {
        headers: { "Accept": "application/json" }, credentials: "same-origin", cache: "no-store"
      }).then(function (response) {
        if (response.status === 401) {
          say("Your session has ended: log in again.");
          paused = true;
          return null;
        }
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      }).then(function (body) {
        if (!body) {
          return;
        }
        body.events.forEach(add);
        while (rows.children.length > MAX_ROWS) {
          rows.removeChild(rows.lastChild);
        }
        if (body.events.length && empty) {
          empty.hidden = true;
        }
        after = String(body.next);
        rows.dataset.after = after;
        say("Updated " + new Date().toLocaleTimeString() + (body.events.length ? " (" + body.events.length + " new)" : ""));
        schedule();
      }).catch(function (error) {
        say("Could not reach the server (" + error.message + "); trying again.");
        schedule();
      });
    }

    toggle.hidden = false;
    toggle.addEventListener("click", function () {
      paused = !paused;
      toggle.textContent = paused ? "Resume" : "Pause";
      say(paused ? "Paused." : "Resuming\u2026");
      if (!paused) {
        poll();
      } else {
        clearTimeout(timer);
      }
    });
    say("Live.");
    schedule();
  }

  document.addEventListener("DOMContentLoaded", function () {
    confirmForms();
    liveFeed();
  });
})();
