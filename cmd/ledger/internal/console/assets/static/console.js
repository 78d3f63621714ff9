// Live updates: the day page follows the log over the API's server-sent
// events (forwarded at /console/live) and lists what arrives. The page
// reads fully without this script.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) { return; }
  var from = Number(live.getAttribute("data-from")) + 1;
  var status = document.getElementById("live-status");
  var list = document.getElementById("live-events");
  var seen = 0;
  var src = new EventSource("/console/live?from=" + from);
  function show(ev) {
    seen++;
    var e;
    try { e = JSON.parse(ev.data); } catch (err) { return; }
    var li = document.createElement("li");
    li.textContent = "#" + e.position + " " + e.type + " " + (e.aggregate_id || "") + " at " + e.occurred_at;
    list.insertBefore(li, list.firstChild);
    while (list.children.length > 20) { list.removeChild(list.lastChild); }
    status.textContent = seen + " new event(s) since this page was made; the last at position " + e.position + ". Reload to redraw the chart.";
  }
  // The API names each event by its type; listen to every type the page
  // knows plus the default message.
  var types = (live.getAttribute("data-types") || "").split(" ");
  src.onmessage = show;
  types.forEach(function (t) { if (t) { src.addEventListener(t, show); } });
  src.onopen = function () { if (seen === 0) { status.textContent = "Following the log from position " + from + ": no new event yet."; } };
  src.onerror = function () { status.textContent = "Live updates interrupted; the browser retries."; };
})();
