// The event log's live refresh asks only for the events stored after the newest row shown (ids sort in
// creation order), and htmx puts them on top: the rows already there are never replaced, so a row
// opened to read stays open.
document.addEventListener("htmx:configRequest", function (event) {
  var rows = event.detail.elt;
  if (rows.id !== "event-rows") return;
  var newest = "";
  rows.querySelectorAll("tr[data-event]").forEach(function (row) {
    var id = row.getAttribute("data-event");
    if (id > newest) newest = id;
  });
  if (newest) event.detail.parameters.after = newest;
});
