// The new-operation form: live count of the devices the query picks (a hint, not an error,
// before anything is chosen), whether the tenant's policy will hold it for approval, the
// window's and the series' fields on demand, and the series' next runs while typed.
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("operation-form");
  if (!form) return;
  var count = document.getElementById("preview-count");
  var sample = document.getElementById("preview-sample");
  var errors = document.getElementById("preview-errors");
  var timer = null;
  var sequence = 0;

  // A RECURRING series shows the window's fields too: its start and end bound the series, its
  // clock (console zone or each device's) is the one the expression is read on.
  function showWindow() {
    var chosen = form.querySelector("input[name=schedule_type]:checked");
    var kind = chosen ? chosen.value : "";
    document.getElementById("window-fields").hidden = kind !== "WINDOW" && kind !== "RECURRING";
    var days = form.querySelector(".form-row.field-days");
    if (days) days.hidden = kind === "RECURRING";
    document.getElementById("recurring-fields").hidden = kind !== "RECURRING";
    // A continuous operation's own end: a window's or a series' end is theirs (the form's api_data).
    var selection = form.querySelector("input[name=target_selection]:checked");
    var end = form.querySelector(".form-row.field-continuous_end");
    if (end) end.hidden = !selection || selection.value !== "CONTINUOUS" || kind !== "IMMEDIATE";
  }

  // The expression in words and its next five runs, as the maintenance page shows a schedule's.
  var seriesSequence = 0;
  function seriesPreview() {
    var chosen = form.querySelector("input[name=schedule_type]:checked");
    if (!chosen || chosen.value !== "RECURRING") return;
    var mine = ++seriesSequence;
    var body = new FormData(form);
    var description = document.getElementById("series-description");
    var runs = document.getElementById("series-runs");
    var seriesErrors = document.getElementById("series-errors");
    fetch(form.dataset.seriesPreviewUrl, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: {"X-CSRFToken": body.get("csrfmiddlewaretoken")}
    }).then(function (response) {
      return response.json();
    }).then(function (answer) {
      if (mine !== seriesSequence) return;
      runs.textContent = "";
      seriesErrors.textContent = "";
      description.textContent = answer.description || "–";
      (answer.runs || []).forEach(function (line) {
        var item = document.createElement("li");
        item.textContent = line;
        runs.appendChild(item);
      });
      (answer.errors || []).forEach(function (line) {
        var item = document.createElement("li");
        item.textContent = line;
        seriesErrors.appendChild(item);
      });
    }).catch(function () {
      if (mine === seriesSequence) description.textContent = "preview unavailable";
    });
  }

  // Picking a template fills the form from it (the page is drawn again with its values).
  var picker = document.getElementById("id_template");
  if (picker) {
    picker.addEventListener("change", function () {
      if (picker.value) window.location.search = "?template=" + encodeURIComponent(picker.value);
    });
  }

  var approval = document.getElementById("approval-note");

  function showErrors(lines) {
    errors.textContent = "";
    (lines || []).forEach(function (line) {
      var item = document.createElement("li");
      item.textContent = line;
      errors.appendChild(item);
    });
  }

  function preview() {
    var mine = ++sequence;
    var body = new FormData(form);
    count.textContent = "…";
    fetch(form.dataset.previewUrl, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: {"X-CSRFToken": body.get("csrfmiddlewaretoken")}
    }).then(function (response) {
      return response.json();
    }).then(function (answer) {
      if (mine !== sequence) return;  // a newer preview is on its way
      if (approval) approval.textContent = answer.approval || "";
      showErrors(answer.errors);
      count.classList.toggle("preview-hint", !!answer.hint || !!answer.errors);
      if (answer.hint) {
        count.textContent = answer.hint;
        sample.textContent = "";
        return;
      }
      if (answer.errors) {
        count.textContent = "No count: the devices' conditions are refused:";
        sample.textContent = "";
        return;
      }
      count.textContent = answer.device_count + (answer.device_count === 1 ? " device matches" : " devices match");
      sample.textContent = answer.devices.length ? "(" + answer.devices.join(", ") + (answer.device_count > answer.devices.length ? ", …" : "") + ")" : "";
    }).catch(function () {
      if (mine === sequence) count.textContent = "preview unavailable";
    });
  }

  function later() {
    clearTimeout(timer);
    timer = setTimeout(function () { preview(); seriesPreview(); }, 300);
  }

  form.addEventListener("input", later);
  form.addEventListener("change", function () { showWindow(); later(); });
  showWindow();
  preview();
  seriesPreview();
});
