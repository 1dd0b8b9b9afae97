// An operation's page: the live view (state, reason, counts and the stacked bar) follows the
// server every 2 s until the operation has settled: final, and a stop's worker done with its
// unfinished commands (answer.settled, operations.admin_live.settled). Stopping on the state
// alone left "pending 20, cancelled 0" on the page after a cancel until a reload. Every part
// comes from the same answer of <id>/progress/ (operations.admin_live.live_data), so they
// always agree with each other. A rollout's panel (waves, abort rules, rate) comes in the
// answer drawn by the page's own template (rollout_html: the server's escaped HTML, no
// script in it).
document.addEventListener("DOMContentLoaded", function () {
  var panel = document.getElementById("live-progress");
  if (!panel) return;
  var stateBox = document.getElementById("live-state");
  var stopping = document.getElementById("live-stopping");
  var reason = document.getElementById("live-reason");
  var updated = document.getElementById("live-updated");
  var resolved = document.getElementById("live-resolved");
  var handedOut = document.getElementById("live-handed-out");
  var waiting = document.getElementById("live-waiting");
  var failing = document.getElementById("failing-count");
  var tools = {
    cancel: document.getElementById("cancel-tool"),
    timeout: document.getElementById("timeout-tool"),
    retry: document.getElementById("retry-tool"),
    pause: document.getElementById("pause-tool"),
    resume: document.getElementById("resume-tool"),
    close: document.getElementById("close-tool")
  };
  var rolloutPanel = document.getElementById("rollout-panel");

  function toggle(tool, shown) {
    // style, not the hidden attribute: the admin's CSS shows every object-tools item
    if (tool) tool.style.display = shown ? "" : "none";
  }

  function show(answer) {
    stateBox.textContent = answer.state;
    stateBox.className = "op-badge op-badge-" + answer.state.toLowerCase();
    stopping.hidden = !answer.stopping;
    reason.textContent = answer.reason || "-";
    updated.textContent = answer.updated_at;
    resolved.textContent = answer.resolved;
    handedOut.textContent = answer.handed_out;
    waiting.textContent = answer.waiting;
    if (failing) failing.textContent = answer.failing;
    answer.bar.forEach(function (part) {
      var segment = panel.querySelector('[data-part="' + part.key + '"]');
      var count = panel.querySelector('[data-count="' + part.key + '"]');
      if (segment) {
        segment.style.width = part.percent + "%";
        segment.title = part.count + " " + part.label;
      }
      if (count) count.textContent = part.count;
    });
    toggle(tools.cancel, !answer.terminal);
    toggle(tools.timeout, !answer.terminal);
    toggle(tools.retry, answer.retryable);
    toggle(tools.pause, answer.pausable);
    toggle(tools.resume, answer.paused);
    toggle(tools.close, answer.closable);
    if (rolloutPanel && typeof answer.rollout_html === "string") rolloutPanel.innerHTML = answer.rollout_html;
    panel.dataset.terminal = answer.terminal ? "true" : "false";
    panel.dataset.settled = answer.settled ? "true" : "false";
  }

  function poll() {
    fetch(panel.dataset.url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.json(); })
      .then(function (answer) {
        show(answer);
        if (!answer.settled) setTimeout(poll, 2000);
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  if (panel.dataset.settled !== "true") setTimeout(poll, 2000);
});
