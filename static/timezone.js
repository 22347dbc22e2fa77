// On a user's first visit, tell the server the browser's time zone (their days and
// hours are shown in it); reload if that changes what the page shows. Afterwards the
// settings page is where it changes.
(function () {
  "use strict";
  var url = document.body.getAttribute("data-detect-timezone");
  if (!url || !window.Intl || !window.fetch) { return; }
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (!zone) { return; }
  var token = JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"];
  fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: {"X-CSRFToken": token, "Content-Type": "application/x-www-form-urlencoded"},
    body: "timezone=" + encodeURIComponent(zone)
  }).then(function (response) {
    if (response.status === 200) { window.location.reload(); }
  });
})();
