// The project dashboard's charts: daily tokens and cost (two axes) and cost by model. Series come
// from <script type="application/json"> blocks (CSP friendly), money already in the person's
// currency. A chart whose canvas or data is missing (a project with no events) is not drawn.
(function () {
  var PALETTE = ["#4f46e5", "#079455", "#b54708", "#175cd3", "#c11574", "#0e9384", "#6938ef", "#98a2b3"];

  function cssVar(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

  function dataOf(id) {
    var source = document.getElementById(id);
    return source ? JSON.parse(source.textContent) : null;
  }

  function money(symbol, value) {
    // Small amounts keep four significant digits, as the page's own figures do.
    var digits = value !== 0 && Math.abs(value) < 1 ? Math.min(8, Math.max(2, 3 - Math.floor(Math.log10(Math.abs(value))))) : 2;
    return symbol + value.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: digits });
  }

  function shortDay(iso) {
    var parts = iso.split("-");
    var months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    return parseInt(parts[2], 10) + " " + months[parseInt(parts[1], 10) - 1];
  }

  function redraw(canvas, config) {
    var old = Chart.getChart(canvas);
    if (old) old.destroy();
    return new Chart(canvas, config);
  }

  function drawSpend() {
    var canvas = document.getElementById("spend-chart");
    var data = dataOf("spend-chart-data");
    if (!canvas || !data || !data.labels.length) return;
    var accent = cssVar("--accent"), ok = cssVar("--ok");
    var wide = canvas.parentNode.clientWidth >= 560;  // axis titles only where they fit
    redraw(canvas, {
      type: "line",
      data: {
        labels: data.labels.map(shortDay),
        datasets: [
          { label: "Tokens", data: data.tokens, borderColor: ok, backgroundColor: ok, yAxisID: "tokens",
            tension: 0.3, borderWidth: 2, pointRadius: 0, pointHoverRadius: 4 },
          { label: "Cost (" + data.currency + ")", data: data.cost, borderColor: accent, backgroundColor: accent, yAxisID: "cost",
            tension: 0.3, borderWidth: 2, pointRadius: 0, pointHoverRadius: 4 }
        ]
      },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        interaction: { mode: "index", intersect: false },
        plugins: {
          legend: { position: "top", align: "end", labels: { usePointStyle: true, pointStyle: "circle", boxWidth: 6, boxHeight: 6, padding: 16 } },
          tooltip: { callbacks: { label: function (item) {
            return item.dataset.yAxisID === "cost" ? " Cost: " + money(data.symbol, item.parsed.y)
              : " Tokens: " + item.parsed.y.toLocaleString();
          } } }
        },
        scales: {
          x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 12 } },
          tokens: { type: "linear", position: "left", beginAtZero: true, border: { display: false },
            title: { display: wide, text: "tokens" },
            ticks: { callback: function (v) { return Intl.NumberFormat(undefined, { notation: "compact" }).format(v); } } },
          cost: { type: "linear", position: "right", beginAtZero: true, border: { display: false },
            grid: { drawOnChartArea: false }, title: { display: wide, text: data.currency },
            ticks: { callback: function (v) { return money(data.symbol, v); } } }
        }
      }
    });
  }

  function drawModels() {
    var canvas = document.getElementById("model-chart");
    var data = dataOf("model-chart-data");
    if (!canvas || !data || !data.labels.length) return;
    var narrow = canvas.parentNode.clientWidth < 420;
    redraw(canvas, {
      type: "doughnut",
      data: {
        labels: data.labels,
        datasets: [{ data: data.cost, backgroundColor: PALETTE.slice(0, data.labels.length), borderColor: cssVar("--surface"), borderWidth: 2 }]
      },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false, cutout: "62%",
        plugins: {
          legend: { position: narrow ? "bottom" : "right", labels: { usePointStyle: true, pointStyle: "circle", boxWidth: 6, boxHeight: 6, padding: 10 } },
          tooltip: { callbacks: { label: function (item) { return " " + item.label + ": " + money(data.symbol, item.parsed); } } }
        }
      }
    });
  }

  function draw() {
    if (typeof Chart === "undefined") return;
    Chart.defaults.color = cssVar("--muted");
    Chart.defaults.borderColor = cssVar("--border");
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.font.size = 12;
    drawSpend();
    drawModels();
  }
  document.addEventListener("DOMContentLoaded", draw);
  document.addEventListener("pulse:themechange", draw);
})();
