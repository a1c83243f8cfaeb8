/* psimexport pages: a little progressive enhancement. Everything works without it. */
(function () {
  "use strict";

  function iso(ms) { return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z"); }

  // Timeline: a click opens the review page at the time clicked (without a review page,
  // the export form with five minutes either side).
  document.addEventListener("click", function (event) {
    var track = event.target.closest && event.target.closest(".timeline .track");
    if (!track) return;
    var timeline = track.parentElement;
    var start = Number(timeline.dataset.start), end = Number(timeline.dataset.end);
    var box = track.getBoundingClientRect();
    var fraction = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
    var at = start + fraction * (end - start);
    var around = 5 * 60 * 1000;
    event.preventDefault();
    if (timeline.dataset.review) {
      window.location.href = timeline.dataset.review + "?t=" + encodeURIComponent(iso(at));
      return;
    }
    window.location.href = timeline.dataset.export +
      "&from=" + encodeURIComponent(iso(Math.max(start, at - around))) +
      "&to=" + encodeURIComponent(iso(Math.min(end, at + around)));
  });

  // Export form: live preview (recorded time, gaps, size, UTC equivalents) while typing.
  var form = document.querySelector("form.export-form");
  if (form) {
    var timer = null, serial = 0;
    var refresh = function () {
      var data = new URLSearchParams(new FormData(form));
      data.delete("csrfmiddlewaretoken");
      var mine = ++serial;
      fetch(form.dataset.previewUrl + "?" + data.toString(), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) {
          if (mine !== serial) return;
          var preview = document.getElementById("preview");
          preview.innerHTML = html;
          // Which answer is shown: tests (and anyone) can wait for a newer one than they saw.
          preview.dataset.generation = String(mine);
          var row = document.querySelector("#preview .preview-row");
          document.getElementById("start-utc").textContent = row && row.dataset.startUtc ? "= " + row.dataset.startUtc : "";
          document.getElementById("end-utc").textContent = row && row.dataset.endUtc ? "= " + row.dataset.endUtc : "";
        })
        .catch(function () { /* the Preview button still works */ });
    };
    var schedule = function () { clearTimeout(timer); timer = setTimeout(refresh, 350); };
    form.addEventListener("input", schedule);
    form.addEventListener("change", schedule);
    if (form.querySelector("input[name=start]").value) schedule();
  }

  // Cancel and Delete ask first. Without JavaScript the server shows a confirmation page.
  document.addEventListener("submit", function (event) {
    var target = event.target;
    if (!target.matches || !target.matches("form[data-confirm]")) return;
    if (!window.confirm(target.dataset.confirm)) { event.preventDefault(); return; }
    if (!target.querySelector("input[name=confirmed]")) {
      var confirmed = document.createElement("input");
      confirmed.type = "hidden"; confirmed.name = "confirmed"; confirmed.value = "1";
      target.appendChild(confirmed);
    }
  });

  // Live progress of queued and running exports; stops when none is active.
  var table = document.querySelector("table.tasks[data-progress-url]");
  var detail = document.querySelector("article.detail[data-active]");
  var source = table || detail;
  if (source) {
    var url = source.dataset.progressUrl;
    var poll = function () {
      var active = document.querySelectorAll("[data-active][data-id]");
      if (!active.length) return;
      var query = new URLSearchParams();
      active.forEach(function (el) { query.append("id", el.dataset.id); });
      query.append("next", (table && table.dataset.next) || window.location.pathname);
      fetch(url + "?" + query.toString(), { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(function (body) {
          body.tasks.forEach(function (task) {
            var el = document.getElementById("task-" + task.id);
            if (!el) return;
            el.querySelectorAll("progress").forEach(function (bar) { bar.value = task.percents; bar.textContent = task.percents + " %"; });
            el.querySelectorAll(".pct").forEach(function (pct) { pct.textContent = task.percents + "\u00a0%"; });
            var state = el.querySelector(".state");
            if (state && !state.classList.contains("state-" + task.state)) { state.textContent = task.label; state.className = "state state-" + task.state; }
            if (!task.active) {
              if (el === detail) { window.location.reload(); return; }
              if (task.html) { el.outerHTML = task.html; } else { el.removeAttribute("data-active"); }
            }
          });
          (body.batches || []).forEach(function (batch) {
            var head = document.getElementById("batch-" + batch.id);
            if (head) head.outerHTML = batch.html;
          });
          setTimeout(poll, 1500);
        })
        .catch(function () { setTimeout(poll, 5000); });
    };
    setTimeout(poll, 1000);
  }
})();
