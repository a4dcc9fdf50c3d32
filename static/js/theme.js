// Light/dark theme: the saved choice, else the system preference. Loaded in <head> so the page
// never flashes the wrong theme.
(function () {
  var saved = null;
  try { saved = localStorage.getItem("pulse-theme"); } catch (e) { /* storage disabled */ }
  var dark = saved ? saved === "dark" : window.matchMedia("(prefers-color-scheme: dark)").matches;
  document.documentElement.setAttribute("data-theme", dark ? "dark" : "light");
  document.addEventListener("DOMContentLoaded", function () {
    var button = document.getElementById("theme-toggle");
    if (!button) return;
    button.addEventListener("click", function () {
      var next = document.documentElement.getAttribute("data-theme") === "dark" ? "light" : "dark";
      document.documentElement.setAttribute("data-theme", next);
      try { localStorage.setItem("pulse-theme", next); } catch (e) { /* storage disabled */ }
      document.dispatchEvent(new CustomEvent("pulse:themechange", { detail: next }));
    });
  });
})();
