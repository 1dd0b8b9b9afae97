// An operation's page: state and progress follow the server every 2 s until it is final.
document.addEventListener("DOMContentLoaded", function () {
  var panel = document.getElementById("live-progress");
  if (!panel) return;
  var stateBox = document.getElementById("live-state");
  var bar = document.getElementById("live-bar");
  var updated = document.getElementById("live-updated");
  var cancelTool = document.getElementById("cancel-tool");
  var retryTool = document.getElementById("retry-tool");

  function poll() {
    fetch(panel.dataset.url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.json(); })
      .then(function (answer) {
        stateBox.textContent = answer.state;
        bar.innerHTML = answer.progress;  // HTML escaped by the server (format_html)
        updated.textContent = "updated " + new Date().toLocaleTimeString();
        // style, not the hidden attribute: the admin's CSS shows every object-tools item
        if (cancelTool) cancelTool.style.display = answer.terminal ? "none" : "";
        if (retryTool) retryTool.style.display = answer.retryable ? "" : "none";
        panel.dataset.terminal = answer.terminal ? "true" : "false";
        if (!answer.terminal) setTimeout(poll, 2000);
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  if (panel.dataset.terminal !== "true") setTimeout(poll, 2000);
});
