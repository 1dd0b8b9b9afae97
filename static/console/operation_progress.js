// An operation's page: the live view (state, reason, counts and the stacked bar) follows the
// server every 2 s until the operation is final. Every part comes from the same answer of
// <id>/progress/ (operations.admin_live.live_data), so they always agree with each other. A
// rollout's panel (waves, abort rules, rate) comes in the answer drawn by the page's own
// template (rollout_html: the server's escaped HTML, no script in it).
document.addEventListener("DOMContentLoaded", function () {
  var panel = document.getElementById("live-progress");
  if (!panel) return;
  var stateBox = document.getElementById("live-state");
  var reason = document.getElementById("live-reason");
  var updated = document.getElementById("live-updated");
  var resolved = document.getElementById("live-resolved");
  var dispatched = document.getElementById("live-dispatched");
  var cancelTool = document.getElementById("cancel-tool");
  var retryTool = document.getElementById("retry-tool");
  var pauseTool = document.getElementById("pause-tool");
  var resumeTool = document.getElementById("resume-tool");
  var closeTool = document.getElementById("close-tool");
  var rolloutPanel = document.getElementById("rollout-panel");

  function show(answer) {
    stateBox.textContent = answer.state;
    reason.textContent = answer.reason || "-";
    updated.textContent = answer.updated_at;
    resolved.textContent = answer.resolved;
    dispatched.textContent = answer.dispatched;
    answer.bar.forEach(function (part) {
      var segment = panel.querySelector('[data-part="' + part.key + '"]');
      var count = panel.querySelector('[data-count="' + part.key + '"]');
      if (segment) {
        segment.style.width = part.percent + "%";
        segment.title = part.count + " " + part.label;
      }
      if (count) count.textContent = part.count;
    });
    // style, not the hidden attribute: the admin's CSS shows every object-tools item
    if (cancelTool) cancelTool.style.display = answer.terminal ? "none" : "";
    if (retryTool) retryTool.style.display = answer.retryable ? "" : "none";
    if (pauseTool) pauseTool.style.display = answer.pausable ? "" : "none";
    if (resumeTool) resumeTool.style.display = answer.paused ? "" : "none";
    if (closeTool) closeTool.style.display = answer.closable ? "" : "none";
    if (rolloutPanel && typeof answer.rollout_html === "string") rolloutPanel.innerHTML = answer.rollout_html;
    panel.dataset.terminal = answer.terminal ? "true" : "false";
  }

  function poll() {
    fetch(panel.dataset.url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.json(); })
      .then(function (answer) {
        show(answer);
        if (!answer.terminal) setTimeout(poll, 2000);
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  if (panel.dataset.terminal !== "true") setTimeout(poll, 2000);
});
