// Copy buttons: <button data-copy-target="element-id">; the clipboard API needs a secure
// context (HTTPS or localhost), else the text is selected for Ctrl-C.
document.addEventListener("click", function (event) {
  var button = event.target.closest("[data-copy-target]");
  if (!button) return;
  var target = document.getElementById(button.dataset.copyTarget);
  var status = document.getElementById("copy-status");
  var text = target.value !== undefined ? target.value : target.textContent;
  function selectIt() {
    var range = document.createRange();
    range.selectNodeContents(target);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text.trim()).then(
      function () { if (status) status.textContent = "Copied."; },
      function () { selectIt(); if (status) status.textContent = "Press Ctrl-C to copy."; }
    );
  } else {
    selectIt();
    if (status) status.textContent = "Press Ctrl-C to copy.";
  }
});
