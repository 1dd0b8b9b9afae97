"use strict";
// django-celery-beat's periodic task form (templates/admin/djcelery/change_periodictask_form.html):
// shows the chosen crontab in words under its help text. A file, not the package's inline
// script, so the console's Content-Security-Policy (script-src 'self') lets it run.
(function () {
  const data = document.getElementById("readable-crontabs");
  const select = document.getElementById("id_crontab");
  const help = document.querySelector(".field-crontab .help");
  const translation = document.querySelector(".field-crontab_translation");
  if (translation) translation.style.display = "none";  // as the package did (jQuery .hide())
  if (!data || !select || !help) return;
  const readable = JSON.parse(data.textContent);
  const reading = document.createElement("div");
  reading.id = "crontab-reading";
  help.appendChild(reading);
  const show = () => {
    const words = readable[select.value];
    reading.textContent = words ? `Translation: ${words}` : "";
  };
  select.addEventListener("change", show);
  show();
})();
