// alertd console: reloads the page every few seconds so it stays current.
// The page works without this file (a <noscript> meta refresh does the same); the script
// only adds manners: it never reloads while someone is typing, has a form half filled in or
// reads an opened body, and it reloads with a GET so a form is never submitted twice.
(function () {
  "use strict";
  var secs = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  if (!secs) {
    return;
  }
  var edited = false;
  document.addEventListener("input", function () { edited = true; });
  document.addEventListener("change", function () { edited = true; });
  function busy() {
    var a = document.activeElement;
    if (a && /^(INPUT|TEXTAREA|SELECT)$/.test(a.tagName) && a.type !== "hidden") {
      return true;
    }
    return edited || document.querySelector("details[open]") !== null;
  }
  window.setInterval(function () {
    if (!busy() && document.visibilityState !== "hidden") {
      window.location.replace(window.location.href.split("#")[0]);
    }
  }, secs * 1000);
})();
