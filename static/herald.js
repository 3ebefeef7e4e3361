// Herald dashboard: progressive enhancement only. Every action works without this file;
// it adds copy buttons, live relative times, auto-refresh of lists, and the live preview of
// trigger templates.
(function () {
  "use strict";
  var root = document.documentElement;
  root.classList.add("js");

  // Copy buttons: <button class="copy" data-copy="...">.
  document.addEventListener("click", function (e) {
    var button = e.target.closest ? e.target.closest("button.copy") : null;
    if (!button) return;
    var text = button.getAttribute("data-copy") || "";
    var done = function () {
      button.classList.add("done");
      button.textContent = "copied";
      setTimeout(function () {
        button.classList.remove("done");
        button.textContent = "copy";
      }, 1200);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done);
    } else {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      try { document.execCommand("copy"); done(); } catch (err) { /* leave the text selectable */ }
      document.body.removeChild(area);
    }
  });

  // Relative times stay true while the page is open.
  function relative(ms) {
    var s = Math.round((Date.now() - ms) / 1000);
    var future = s < 0;
    if (future) s = -s;
    var amount;
    if (s < 5) return future ? "in a moment" : "just now";
    if (s < 60) amount = s + " s";
    else if (s < 3600) amount = Math.floor(s / 60) + " min";
    else if (s < 172800) amount = Math.floor(s / 3600) + " h";
    else amount = Math.floor(s / 86400) + " d";
    return future ? "in " + amount : amount + " ago";
  }
  function tick() {
    var times = document.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var t = Date.parse(times[i].getAttribute("datetime"));
      if (!isNaN(t)) times[i].textContent = relative(t);
    }
  }
  setInterval(tick, 15000);

  // Auto-refresh: the element with [data-refresh] is reloaded every few seconds while the
  // checkbox #auto-refresh is ticked (the queue's first page ticks it by default).
  var live = document.querySelector("[data-refresh]");
  var toggle = document.getElementById("auto-refresh");
  if (live && toggle) {
    var every = parseInt(live.getAttribute("data-refresh"), 10) * 1000 || 5000;
    setInterval(function () {
      if (!toggle.checked || document.hidden) return;
      fetch(window.location.href, { credentials: "same-origin", headers: { "x-herald-refresh": "1" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (!html) return;
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.getElementById(live.id);
          if (fresh) { live.innerHTML = fresh.innerHTML; tick(); }
        })
        .catch(function () { /* try again next time */ });
    }, every);
  }

  // Live preview of a trigger's template against the event type's example.
  var form = document.querySelector("form[data-preview]");
  if (form) {
    var target = document.getElementById("preview");
    var timer = null;
    var refresh = function () {
      var body = new URLSearchParams(new FormData(form));
      fetch(form.getAttribute("data-preview"), {
        method: "POST",
        credentials: "same-origin",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: body.toString()
      })
        .then(function (r) { return r.text(); })
        .then(function (html) { if (target) target.innerHTML = html; })
        .catch(function () { /* the Preview button still works */ });
    };
    form.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(refresh, 350);
    });
    form.addEventListener("change", function () {
      clearTimeout(timer);
      timer = setTimeout(refresh, 50);
    });
  }
})();
