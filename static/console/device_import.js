// Device import: upload with a progress bar, then show the server's report in place.
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("import-form");
  if (!form || !window.XMLHttpRequest || !window.DOMParser) return;
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var bar = document.getElementById("import-progress");
    var status = document.getElementById("import-status");
    var request = new XMLHttpRequest();
    request.open("POST", form.action || window.location.href);
    request.upload.onprogress = function (e) {
      if (e.lengthComputable) { bar.value = Math.round((100 * e.loaded) / e.total); }
    };
    request.upload.onload = function () { bar.removeAttribute("value"); status.textContent = "Validating and importing…"; };
    request.onload = function () {
      var page = new DOMParser().parseFromString(request.responseText, "text/html");
      var result = page.getElementById("import-result");
      if (request.status !== 200 || !result) { status.textContent = "The server answered " + request.status + "."; return; }
      document.getElementById("import-result").replaceWith(result);
      bar.hidden = true; bar.value = 0;
      status.textContent = "";
      form.reset();
      var next = page.querySelector("input[name=csrfmiddlewaretoken]");
      if (next) form.querySelector("input[name=csrfmiddlewaretoken]").value = next.value;
    };
    request.onerror = function () { status.textContent = "The upload failed; try again."; };
    bar.hidden = false; bar.value = 0;
    status.textContent = "Uploading…";
    request.send(new FormData(form));
  });
});
