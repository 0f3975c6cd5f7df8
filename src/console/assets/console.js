// phonecheck console: the only script the pages load (Content-Security-Policy: script-src 'self').
// It uploads a file with progress, shows what was read, and follows a running job. Everything it
// inserts is either text (textContent) or HTML rendered and escaped by the server.
"use strict";
(function () {
  function $(id) { return document.getElementById(id); }

  function size(n) {
    if (n < 1024) return n + " B";
    if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
    return (n / 1048576).toFixed(1) + " MiB";
  }

  // ---- New job: upload, preview, read again with another column or sheet.
  var form = $("upload-form");
  if (form) {
    var csrf = form.dataset.csrf;
    var lastFile = null;
    var lastJob = null;

    var showError = function (text) {
      var box = $("upload-error");
      box.textContent = text;
      box.hidden = false;
    };

    var checks = function () {
      var chosen = [];
      form.querySelectorAll("input[name=check]:checked").forEach(function (c) { chosen.push(c.value); });
      return chosen.join(",");
    };

    var loadPreview = function (id) {
      return fetch("/jobs/" + encodeURIComponent(id) + "/preview", { credentials: "same-origin" })
        .then(function (r) { return r.text(); })
        .then(function (html) {
          // Server-rendered, every value escaped by the template engine.
          $("preview").innerHTML = html;
          var reread = $("reread");
          if (reread) {
            reread.hidden = false;
            reread.addEventListener("submit", function (e) {
              e.preventDefault();
              var column = $("reread-column").value;
              var sheet = $("reread-sheet").value;
              // The earlier reading is not needed any more.
              fetch("/jobs/" + encodeURIComponent(id) + "/delete", {
                method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf }
              }).finally(function () { send(column, sheet); });
            });
          }
        });
    };

    var send = function (column, sheet) {
      var file = lastFile;
      if (!file) return;
      $("upload-error").hidden = true;
      $("upload-retry").hidden = true;
      $("preview").textContent = "";
      var params = new URLSearchParams();
      params.set("name", file.name);
      params.set("label", $("label").value);
      params.set("column", column);
      params.set("sheet", sheet);
      params.set("registered_at_column", $("registered_at_column").value);
      params.set("checks", checks());
      params.set("max_cost", $("max_cost").value);
      var bar = $("upload-progress");
      var status = $("upload-status");
      bar.hidden = false;
      bar.value = 0;
      $("upload").disabled = true;
      var xhr = new XMLHttpRequest();
      xhr.open("POST", "/jobs/upload?" + params.toString());
      xhr.setRequestHeader("X-CSRF-Token", csrf);
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.upload.onprogress = function (e) {
        if (e.lengthComputable) {
          bar.value = Math.floor(e.loaded * 100 / e.total);
          status.textContent = form.dataset.uploading + " " + bar.value + "% (" + size(e.loaded) + " / " + size(e.total) + ")";
        }
      };
      xhr.upload.onload = function () { status.textContent = form.dataset.reading; };
      xhr.onerror = function () {
        $("upload").disabled = false;
        status.textContent = "";
        showError(form.dataset.broken);
        $("upload-retry").hidden = false;
      };
      xhr.onload = function () {
        $("upload").disabled = false;
        var answer = null;
        try { answer = JSON.parse(xhr.responseText); } catch (e) { answer = null; }
        if (xhr.status === 200 && answer && answer.id) {
          bar.value = 100;
          status.textContent = "";
          lastJob = answer.id;
          form.dataset.job = answer.id;
          loadPreview(answer.id);
        } else {
          status.textContent = "";
          showError(answer && answer.error ? answer.error : ("HTTP " + xhr.status));
          $("upload-retry").hidden = false;
        }
      };
      xhr.send(file);
    };

    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var input = $("file");
      if (!input.files || input.files.length === 0) return;
      lastFile = input.files[0];
      send($("column").value, $("sheet").value);
    });
    $("upload-retry").addEventListener("click", function () {
      send($("column").value, $("sheet").value);
    });
  }

  // ---- A job's page: follow the progress until the job ends, then show the downloads.
  var live = $("live");
  if (live) {
    var id = live.dataset.job;
    var body = $("live-body");
    if (body && body.dataset.final !== "true") {
      var poll = function () {
        fetch("/jobs/" + encodeURIComponent(id) + "/live", { credentials: "same-origin" })
          .then(function (r) {
            if (r.redirected || !r.ok) { throw new Error("stopped"); }
            return r.text();
          })
          .then(function (html) {
            live.innerHTML = html;
            var now = $("live-body");
            if (now && now.dataset.final === "true") {
              window.location.reload();
            } else {
              window.setTimeout(poll, 1000);
            }
          })
          .catch(function () { window.setTimeout(poll, 5000); });
      };
      window.setTimeout(poll, 1000);
    }
  }
})();
