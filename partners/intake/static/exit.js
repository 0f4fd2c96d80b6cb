// Quick exit: the button, or the Escape key, replaces this page in the history with an everyday site.
(function () {
  "use strict";
  var link = document.getElementById("quick-exit");
  function leave(event) {
    if (event) event.preventDefault();
    document.body.textContent = "";
    window.location.replace(link.href);
  }
  link.addEventListener("click", leave);
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") leave(event);
  });
})();
