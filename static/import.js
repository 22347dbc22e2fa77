// Import page: drag-and-drop onto the file picker, a list of what was chosen, and a
// busy state while a large upload is on its way. The form works without this script.
(function () {
  "use strict";
  var form = document.querySelector("[data-upload-form]");
  if (!form) { return; }
  var zone = form.querySelector("[data-drop-zone]");
  var input = form.querySelector("[data-file-input]");
  var list = form.querySelector("[data-chosen-files]");
  var button = form.querySelector("[data-upload-button]");

  function size(bytes) {
    if (bytes >= 1048576) { return (bytes / 1048576).toFixed(1) + " MB"; }
    return Math.max(1, Math.round(bytes / 1024)) + " KB";
  }

  function show() {
    list.textContent = "";
    Array.prototype.forEach.call(input.files, function (file) {
      var item = document.createElement("li");
      item.textContent = file.name + " (" + size(file.size) + ")";
      list.appendChild(item);
    });
  }

  ["dragenter", "dragover"].forEach(function (type) {
    zone.addEventListener(type, function (event) {
      event.preventDefault();
      zone.classList.add("drop-zone-active");
    });
  });
  ["dragleave", "drop"].forEach(function (type) {
    zone.addEventListener(type, function () { zone.classList.remove("drop-zone-active"); });
  });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      show();
    }
  });
  input.addEventListener("change", show);
  form.addEventListener("submit", function () {
    button.disabled = true;
    button.textContent = "Uploading…";
  });
})();
