// The sequence editor: refresh a step's email preview shortly after its fields change. Without this
// script the Preview buttons do the same on click.
(function () {
  "use strict";
  var form = document.getElementById("editor");
  if (!form || !form.requestSubmit) return;
  var timers = {};
  form.addEventListener("input", function (event) {
    var step = event.target.closest("[data-step]");
    if (!step) return;
    var button = step.querySelector("button[data-preview]");
    if (!button) return;
    var key = step.getAttribute("data-step");
    clearTimeout(timers[key]);
    timers[key] = setTimeout(function () { form.requestSubmit(button); }, 600);
  });
  // Show each step's preview once on load.
  form.querySelectorAll("button[data-preview]").forEach(function (button) { form.requestSubmit(button); });
})();
