// Charts of the supervisor and analysis pages, drawn with the vendored ECharts from the JSON the
// server puts in each <div class="chart" data-kind data-chart>. Times arrive as the site's
// wall clock written as UTC ms, so every time axis uses useUTC and shows the site's clock.
// Charts are (re)drawn on load and after htmx swaps a fragment in.
(function () {
  "use strict";

  const STATE_COLOURS = {
    running: "#2e7d32", setup: "#6a1b9a", unplanned_downtime: "#c62828", blocked: "#ef6c00",
    starved: "#f9a825", planned_downtime: "#1565c0", not_scheduled: "#757575",
  };
  const pct = (v) => (v === null || v === undefined ? null : Math.round(v * 1000) / 10);
  const short = (path) => path.split("/").pop();

  function hours(ms) {
    const minutes = Math.round(ms / 60000);
    return minutes >= 60 ? `${Math.floor(minutes / 60)} h ${minutes % 60} min` : `${minutes} min`;
  }

  // Rectangles on rows: the Gantt (scheduled + actual runs) and the state timeline.
  function barsOption(data, colour, height) {
    const rows = data.rows;
    return {
      useUTC: true,
      animation: false,
      grid: { left: 120, right: 24, top: 12, bottom: 36 },
      tooltip: {
        formatter: (p) => `<b>${p.data.label}</b><br>${short(rows[p.data.row])}<br>${p.data.text}`,
      },
      dataZoom: [{ type: "inside", filterMode: "weakFilter" }],
      xAxis: { type: "time", min: data.window[0], max: data.window[1] },
      yAxis: {
        type: "category", data: rows.map(short), inverse: true,
        axisLabel: { width: 110, overflow: "truncate" },
      },
      series: [{
        type: "custom",
        encode: { x: [1, 2], y: 0 },
        data: data.bars.map((b) => ({ value: [b.row, b.start, b.end], ...b })),
        renderItem: (params, api) => {
          const start = api.coord([api.value(1), api.value(0)]);
          const end = api.coord([api.value(2), api.value(0)]);
          const h = api.size([0, 1])[1] * height(params.dataIndex);
          const shape = echarts.graphic.clipRectByRect(
            { x: start[0], y: start[1] - h / 2, width: Math.max(end[0] - start[0], 2), height: h },
            { x: params.coordSys.x, y: params.coordSys.y,
              width: params.coordSys.width, height: params.coordSys.height },
          );
          return shape && {
            type: "rect", shape,
            style: { fill: colour(params.dataIndex), stroke: "#fff", lineWidth: 0.5 },
          };
        },
      }],
    };
  }

  function gantt(el, data) {
    const chart = echarts.init(el);
    const bar = (i) => data.bars[i];
    chart.setOption(barsOption(
      data,
      (i) => (bar(i).kind === "scheduled" ? "#1565c0" : "#9e9e9e"),
      (i) => (bar(i).kind === "scheduled" ? 0.45 : 0.25),
    ));
    chart.on("click", (p) => {
      if (p.data && p.data.kind === "scheduled" && window.htmx) {
        htmx.ajax("GET", `/supervisor/forms/schedule-move?id=${encodeURIComponent(p.data.id)}`,
          { target: "#dialog-body" });
      }
    });
    return chart;
  }

  function timeline(el, data) {
    const chart = echarts.init(el);
    chart.setOption(barsOption(
      data, (i) => STATE_COLOURS[data.bars[i].type] || "#555", () => 0.6,
    ));
    return chart;
  }

  function trend(el, data) {
    const b = data.buckets;
    const chart = echarts.init(el);
    const line = (name, key) => ({
      name, type: "line", data: b.map((x) => pct(x[key])), connectNulls: false, symbolSize: 6,
    });
    chart.setOption({
      animation: false,
      tooltip: { trigger: "axis", valueFormatter: (v) => (v === null ? "–" : `${v} %`) },
      legend: { top: 0 },
      grid: { left: 48, right: 16, top: 36, bottom: 48 },
      xAxis: { type: "category", data: b.map((x) => x.label), axisLabel: { rotate: b.length > 8 ? 30 : 0 } },
      // 100 % at least; more when a figure exceeds it (a wrong ideal rate shows, not clips).
      yAxis: {
        type: "value", min: 0, max: (v) => Math.max(100, Math.ceil(v.max / 10) * 10),
        axisLabel: { formatter: "{value} %" },
      },
      series: [
        { name: "OEE", type: "bar", data: b.map((x) => pct(x.oee)), itemStyle: { color: "#37474f" } },
        line("Availability", "availability"), line("Performance", "performance"),
        line("Quality", "quality"),
      ],
    });
    return chart;
  }

  function counts(el, data) {
    const b = data.buckets;
    const chart = echarts.init(el);
    const round = (v) => (v === null ? null : Math.round(v));
    chart.setOption({
      animation: false,
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { left: 64, right: 16, top: 36, bottom: 48 },
      xAxis: { type: "category", data: b.map((x) => x.label) },
      yAxis: { type: "value" },
      series: [
        { name: "Good", type: "bar", stack: "made", data: b.map((x) => x.good), itemStyle: { color: "#2e7d32" } },
        { name: "Reject", type: "bar", stack: "made", data: b.map((x) => x.reject), itemStyle: { color: "#c62828" } },
        { name: "Target", type: "line", step: "middle", data: b.map((x) => round(x.target)), itemStyle: { color: "#1565c0" } },
      ],
    });
    return chart;
  }

  function pareto(el, rows) {
    const chart = echarts.init(el);
    chart.setOption({
      animation: false,
      tooltip: {
        trigger: "axis",
        formatter: (ps) => `<b>${rows[ps[0].dataIndex].label}</b><br>${hours(rows[ps[0].dataIndex].downtime_ms)}`
          + ` (${pct(rows[ps[0].dataIndex].share)} %)`,
      },
      grid: { left: 56, right: 48, top: 16, bottom: 64 },
      xAxis: {
        type: "category", data: rows.map((r) => r.label),
        axisLabel: { rotate: rows.length > 4 ? 30 : 0, width: 90, overflow: "truncate" },
      },
      yAxis: [
        { type: "value", name: "min", axisLabel: { formatter: (v) => Math.round(v) } },
        { type: "value", min: 0, max: 100, axisLabel: { formatter: "{value} %" } },
      ],
      series: [
        { type: "bar", data: rows.map((r) => r.downtime_ms / 60000), itemStyle: { color: "#c62828" } },
        { type: "line", yAxisIndex: 1, data: rows.map((r) => pct(r.cumulative_share)), itemStyle: { color: "#37474f" } },
      ],
    });
    return chart;
  }

  const KINDS = { gantt, timeline, trend, counts, pareto };

  function draw(root) {
    for (const el of root.querySelectorAll(".chart[data-chart]:not([data-drawn])")) {
      const make = KINDS[el.dataset.kind];
      if (!make) continue;
      const chart = make(el, JSON.parse(el.dataset.chart));
      el.dataset.drawn = "1";
      new ResizeObserver(() => chart.resize()).observe(el);
    }
  }

  document.addEventListener("DOMContentLoaded", () => draw(document));
  // A swapped-in fragment brings new, undrawn chart elements (the old ones left the page).
  document.addEventListener("htmx:afterSettle", () => draw(document));
})();
