// Benchmark pages: client-side sorting of the model table and the charts. Data comes from a
// <script type="application/json" id="benchmark-chart-data"> block (CSP friendly).
(function () {
  var PALETTE = ["#4f46e5", "#079455", "#d92d20", "#b54708", "#175cd3", "#c11574", "#0e9384", "#6938ef", "#667085", "#ca8504"];

  var colors = {};
  function colorFor(name) {
    if (!(name in colors)) colors[name] = PALETTE[Object.keys(colors).length % PALETTE.length];
    return colors[name];
  }

  function cssVar(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

  // ---- Sorting -------------------------------------------------------------------------------
  function sortValue(cell, kind) {
    var raw = cell ? cell.getAttribute("data-sort-value") : "";
    if (raw === null || raw === "") return null;  // missing values always sort last
    if (kind === "number") { var n = parseFloat(raw); return isNaN(n) ? null : n; }
    return raw.toLowerCase();
  }

  function sortRows(table, index, kind, ascending) {
    var tbody = table.tBodies[0];
    var rows = Array.prototype.slice.call(tbody.rows);
    rows.sort(function (a, b) {
      var x = sortValue(a.cells[index], kind), y = sortValue(b.cells[index], kind);
      if (x === null && y === null) return 0;
      if (x === null) return 1;
      if (y === null) return -1;
      var order = x < y ? -1 : x > y ? 1 : 0;
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { tbody.appendChild(row); });
  }

  // On small screens the table is stacked and its header (the sort buttons) hidden, so a
  // <select> offers the same sorts; both stay in step. Built here, so it exists only with JS.
  function sortSelect(table, buttons, apply) {
    var wrap = document.createElement("div");
    wrap.className = "sort-control";
    var label = document.createElement("label");
    label.textContent = "Sort by";
    var select = document.createElement("select");
    select.id = "sort-" + (table.id || "table");
    select.setAttribute("data-testid", "sort-select");
    label.htmlFor = select.id;
    buttons.forEach(function (button, i) {
      var name = button.textContent.trim();
      var text = button.getAttribute("data-sort") === "text";
      [[true, text ? "A–Z" : "low to high"], [false, text ? "Z–A" : "high to low"]].forEach(function (pair) {
        var option = document.createElement("option");
        option.value = i + ":" + (pair[0] ? "asc" : "desc");
        option.textContent = name + " (" + pair[1] + ")";
        select.appendChild(option);
      });
    });
    select.addEventListener("change", function () {
      var parts = select.value.split(":");
      apply(parseInt(parts[0], 10), parts[1] === "asc");
    });
    wrap.appendChild(label);
    wrap.appendChild(select);
    var box = table.closest(".table-wrap") || table;
    box.parentNode.insertBefore(wrap, box);
    return select;
  }

  function setupSorting(table) {
    var buttons = Array.prototype.slice.call(table.querySelectorAll("thead th button[data-sort]"));
    var select = null;
    function apply(i, ascending) {
      var button = buttons[i];
      var th = button.closest("th");
      var index = Array.prototype.indexOf.call(th.parentNode.children, th);
      buttons.forEach(function (b) { b.removeAttribute("aria-sort"); });
      button.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      if (select) select.value = i + ":" + (ascending ? "asc" : "desc");
      sortRows(table, index, button.getAttribute("data-sort"), ascending);
    }
    buttons.forEach(function (button, i) {
      button.addEventListener("click", function () {
        apply(i, button.getAttribute("aria-sort") !== "ascending");
      });
    });
    select = sortSelect(table, buttons, apply);
    var initial = buttons.findIndex(function (b) { return b.hasAttribute("aria-sort"); });
    if (initial >= 0) select.value = initial + ":" + (buttons[initial].getAttribute("aria-sort") === "ascending" ? "asc" : "desc");
  }

  // ---- Charts --------------------------------------------------------------------------------
  function shortLabels(labels) {
    if (!labels.length) return [];
    var first = new Date(labels[0]), last = new Date(labels[labels.length - 1]);
    var spanHours = (last - first) / 3600000;
    return labels.map(function (iso) {
      var d = new Date(iso);
      var time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
      if (spanHours <= 48) return time;
      var day = d.toLocaleDateString([], { month: "short", day: "numeric" });
      return spanHours <= 24 * 8 ? day + " " + time : day;
    });
  }

  function baseOptions(yTitle, extra) {
    var options = {
      responsive: true, maintainAspectRatio: false, animation: false,
      interaction: { mode: "index", intersect: false },
      plugins: {
        legend: { position: "top", align: "end", labels: { usePointStyle: true, pointStyle: "circle", boxWidth: 6, boxHeight: 6, padding: 12 } }
      },
      scales: {
        x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 6 } },
        y: { beginAtZero: true, border: { display: false }, title: { display: true, text: yTitle } }
      }
    };
    if (extra) extra(options);
    return options;
  }

  function showEmpty(canvas, empty) {
    var note = document.querySelector('[data-empty-for="' + canvas.id + '"]');
    if (note) note.hidden = !empty;
  }

  function lineChart(canvas, timeline, key, yTitle, scale, extra) {
    showEmpty(canvas, !timeline.series.some(function (series) {
      return series[key].some(function (v) { return v !== null; });
    }));
    var labels = shortLabels(timeline.labels);
    var datasets = timeline.series.map(function (series) {
      var color = colorFor(series.model);
      return {
        label: series.model,
        data: series[key].map(function (v) { return v === null ? null : v * scale; }),
        borderColor: color, backgroundColor: color, tension: key === "error_rate" ? 0 : 0.3, borderWidth: 2,
        pointRadius: 2, pointHoverRadius: 4, spanGaps: true
      };
    });
    return new Chart(canvas, { type: "line", data: { labels: labels, datasets: datasets }, options: baseOptions(yTitle, extra) });
  }

  var charts = [];
  function draw() {
    var source = document.getElementById("benchmark-chart-data");
    if (!source || typeof Chart === "undefined") return;
    var data = JSON.parse(source.textContent);
    (data.models || []).forEach(colorFor);
    charts.forEach(function (chart) { chart.destroy(); });
    charts = [];
    Chart.defaults.color = cssVar("--muted");
    Chart.defaults.borderColor = cssVar("--border");
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.font.size = 12;

    var bar = document.getElementById("ttft-chart");
    if (bar) {
      showEmpty(bar, !data.bar.labels.length);
      // Horizontal bars: long model names read on one line, and every bar keeps its label
      // (a category axis auto-skips labels when they do not fit, leaving bars unnamed).
      charts.push(new Chart(bar, {
        type: "bar",
        data: {
          labels: data.bar.labels,
          datasets: [{ label: "TTFT p50 (ms)", data: data.bar.ttft_p50_ms, borderRadius: 4, maxBarThickness: 28,
            backgroundColor: data.bar.labels.map(colorFor) }]
        },
        options: baseOptions("ms", function (options) {
          options.indexAxis = "y";
          options.plugins.legend.display = false;
          options.interaction = { mode: "nearest", axis: "y", intersect: false };
          options.scales = {
            x: { beginAtZero: true, border: { display: false }, title: { display: true, text: "ms" } },
            y: { grid: { display: false }, ticks: { autoSkip: false } }
          };
        })
      }));
    }
    var latency = document.getElementById("latency-chart");
    if (latency) charts.push(lineChart(latency, data.timeline, "latency_p50_ms", "ms", 1));
    var tps = document.getElementById("tps-chart");
    if (tps) charts.push(lineChart(tps, data.timeline, "tps_p50", "tokens/s", 1));
    var errors = document.getElementById("errors-chart");
    if (errors) {
      charts.push(lineChart(errors, data.timeline, "error_rate", "% of requests", 100, function (options) {
        options.scales.y.suggestedMax = 100;
        options.plugins.tooltip = { callbacks: { label: function (ctx) { return ctx.dataset.label + ": " + Math.round(ctx.parsed.y) + " %"; } } };
      }));
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("table[data-sortable]").forEach(setupSorting);
    draw();
  });
  document.addEventListener("pulse:themechange", draw);
})();
