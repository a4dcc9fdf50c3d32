// The dashboard's chart area. Series come from a <script type="application/json"> block (CSP
// friendly); with no data the chart shows its axes and the page says so.
(function () {
  function cssVar(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }
  function draw() {
    var canvas = document.getElementById("spend-chart");
    var source = document.getElementById("spend-chart-data");
    if (!canvas || !source || typeof Chart === "undefined") return;
    var data = JSON.parse(source.textContent);
    if (canvas._chart) canvas._chart.destroy();
    Chart.defaults.color = cssVar("--muted");
    Chart.defaults.borderColor = cssVar("--border");
    canvas._chart = new Chart(canvas, {
      type: "line",
      data: {
        labels: data.labels,
        datasets: [
          { label: "Cost (USD)", data: data.cost, borderColor: cssVar("--accent"), yAxisID: "cost", tension: 0.3 },
          { label: "Tokens", data: data.tokens, borderColor: cssVar("--ok"), yAxisID: "tokens", tension: 0.3 }
        ]
      },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        scales: {
          cost: { type: "linear", position: "right", beginAtZero: true, title: { display: true, text: "USD" } },
          tokens: { type: "linear", position: "left", beginAtZero: true, title: { display: true, text: "tokens" } }
        }
      }
    });
  }
  document.addEventListener("DOMContentLoaded", draw);
  document.addEventListener("pulse:themechange", draw);
})();
