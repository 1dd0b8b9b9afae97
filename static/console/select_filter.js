// The console's drop-down list filters (config/console/filters.py): choosing an option opens the
// list with that filter, as clicking one of the links Django's filters are made of does.
document.addEventListener("change", function (event) {
  var select = event.target;
  if (!(select instanceof HTMLSelectElement) || !select.matches("select[data-filter-select]")) return;
  window.location.href = select.value;
});
