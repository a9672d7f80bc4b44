// The sequence editor: refresh a step's email preview shortly after its fields change. Without this
// script the Preview buttons do the same on click.
(function () {
  "use strict";
  var form = document.getElementById("editor");
  if (!form || !form.requestSubmit) return;
  // A form has one pending submission: a second requestSubmit before the first one's iframe has loaded
  // cancels the first, so the previews are asked for one after another.
  var queue = [];
  var busy = false;
  function next() {
    if (busy || !queue.length) return;
    busy = true;
    var button = queue.shift();
    var frame = form.querySelector('iframe[name="' + button.getAttribute("formtarget") + '"]');
    var guard;
    function done() {
      if (frame) frame.removeEventListener("load", done);
      clearTimeout(guard);
      busy = false;
      next();
    }
    if (frame) frame.addEventListener("load", done);
    guard = setTimeout(done, 10000);
    form.requestSubmit(button);
  }
  function preview(button) {
    if (queue.indexOf(button) < 0) queue.push(button);
    next();
  }
  var timers = {};
  form.addEventListener("input", function (event) {
    var step = event.target.closest("[data-step]");
    if (!step) return;
    var button = step.querySelector("button[data-preview]");
    if (!button) return;
    var key = step.getAttribute("data-step");
    clearTimeout(timers[key]);
    timers[key] = setTimeout(function () { preview(button); }, 600);
  });
  // Show each step's preview once on load.
  form.querySelectorAll("button[data-preview]").forEach(preview);
})();
