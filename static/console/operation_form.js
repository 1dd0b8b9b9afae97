// The new-operation form: live preview of the devices the query picks, window fields on demand.
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("operation-form");
  if (!form) return;
  var count = document.getElementById("preview-count");
  var sample = document.getElementById("preview-sample");
  var errors = document.getElementById("preview-errors");
  var timer = null;
  var sequence = 0;

  function showWindow() {
    var chosen = form.querySelector("input[name=schedule_type]:checked");
    document.getElementById("window-fields").hidden = !chosen || chosen.value !== "WINDOW";
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
      errors.textContent = "";
      if (answer.errors) {
        count.textContent = "no preview";
        sample.textContent = "";
        answer.errors.forEach(function (line) {
          var item = document.createElement("li");
          item.textContent = line;
          errors.appendChild(item);
        });
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
    timer = setTimeout(preview, 300);
  }

  form.addEventListener("input", later);
  form.addEventListener("change", function () { showWindow(); later(); });
  showWindow();
  preview();
});
