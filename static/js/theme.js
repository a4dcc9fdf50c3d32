// Light/dark theme: the saved choice, else the system preference. Loaded in <head> so the page
// never flashes the wrong theme. Also: [data-copy="#selector"] buttons copy that element's text.
(function () {
  var saved = null;
  try { saved = localStorage.getItem("pulse-theme"); } catch (e) { /* storage disabled */ }
  var dark = saved ? saved === "dark" : window.matchMedia("(prefers-color-scheme: dark)").matches;
  document.documentElement.setAttribute("data-theme", dark ? "dark" : "light");
  document.addEventListener("DOMContentLoaded", function () {
    var button = document.getElementById("theme-toggle");
    if (button) {
      button.addEventListener("click", function () {
        var next = document.documentElement.getAttribute("data-theme") === "dark" ? "light" : "dark";
        document.documentElement.setAttribute("data-theme", next);
        try { localStorage.setItem("pulse-theme", next); } catch (e) { /* storage disabled */ }
        document.dispatchEvent(new CustomEvent("pulse:themechange", { detail: next }));
      });
    }
    if (!navigator.clipboard) return;  // copying needs a secure context; the text stays selectable
    document.querySelectorAll("[data-copy]").forEach(function (copy) {
      var source = document.querySelector(copy.getAttribute("data-copy"));
      if (!source) return;
      copy.hidden = false;
      copy.addEventListener("click", function () {
        navigator.clipboard.writeText(source.textContent.trim()).then(function () {
          copy.textContent = "Copied";
          setTimeout(function () { copy.textContent = "Copy"; }, 2000);
        }, function () { /* permission denied: the text stays selectable */ });
      });
    });
  });
})();
