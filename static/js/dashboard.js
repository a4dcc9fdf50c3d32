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
    var accent = cssVar("--accent"), ok = cssVar("--ok");
    var wide = canvas.parentNode.clientWidth >= 560;  // axis titles only where they fit
    Chart.defaults.color = cssVar("--muted");
    Chart.defaults.borderColor = cssVar("--border");
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.font.size = 12;
    canvas._chart = new Chart(canvas, {
      type: "line",
      data: {
        labels: data.labels,
        datasets: [
          { label: "Cost (USD)", data: data.cost, borderColor: accent, backgroundColor: accent, yAxisID: "cost",
            tension: 0.3, borderWidth: 2, pointRadius: 0, pointHoverRadius: 4 },
          { label: "Tokens", data: data.tokens, borderColor: ok, backgroundColor: ok, yAxisID: "tokens",
            tension: 0.3, borderWidth: 2, pointRadius: 0, pointHoverRadius: 4 }
        ]
      },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        interaction: { mode: "index", intersect: false },
        plugins: {
          legend: { position: "top", align: "end", labels: { usePointStyle: true, pointStyle: "circle", boxWidth: 6, boxHeight: 6, padding: 16 } }
        },
        scales: {
          x: { grid: { display: false } },
          cost: { type: "linear", position: "right", beginAtZero: true, border: { display: false },
            grid: { drawOnChartArea: false }, title: { display: wide, text: "USD" } },
          tokens: { type: "linear", position: "left", beginAtZero: true, border: { display: false },
            title: { display: wide, text: "tokens" } }
        }
      }
    });
  }
  document.addEventListener("DOMContentLoaded", draw);
  document.addEventListener("pulse:themechange", draw);
})();
