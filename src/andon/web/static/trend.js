// The history trend of one tag on its detail page (uPlot, vendored). Reads
// /api/v1/tags/history: raw samples for short ranges, min/avg/max buckets (at most ~600) for
// long ones; text values are listed instead of drawn. A range "back from now" follows the live
// values (the "andon:tags" events of live.js); a fixed From/To range does not. Times are drawn
// and read on the site's clock (<body data-tz>).
(function () {
  "use strict";
  const box = document.getElementById("trend");
  if (!box || typeof uPlot === "undefined") return;
  const path = box.dataset.path;
  const tz = document.body.dataset.tz || "UTC";
  const chartEl = box.querySelector(".trend-chart");
  const statusEl = box.querySelector(".trend-status");
  const textTable = box.querySelector(".trend-text");
  const RAW_MAX_MS = 15 * 60 * 1000;
  const MAX_POINTS = 600;
  let plot = null;
  let data = null;
  let follow = null; // the range in ms while following "now"; null for a fixed range

  function live() { return window.andonLive; }

  function tzOffsetMs(utcMs) {
    const parts = new Intl.DateTimeFormat("en-US", {
      timeZone: tz, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    }).formatToParts(new Date(utcMs));
    const p = Object.fromEntries(parts.map((x) => [x.type, x.value]));
    const wall = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second);
    return wall - Math.floor(utcMs / 1000) * 1000;
  }

  // "2026-03-02T08:00[:05]" on the site's clock -> epoch ms.
  function wallToMs(text) {
    const [day, clock] = text.split("T");
    const [y, mo, d] = day.split("-").map(Number);
    const [h, mi, s] = (clock || "00:00").split(":").map(Number);
    const wall = Date.UTC(y, mo - 1, d, h, mi, s || 0);
    const guess = wall - tzOffsetMs(wall);
    return wall - tzOffsetMs(guess); // again with the offset at the instant itself (DST)
  }

  function msToWall(ms) {
    return new Date(ms + tzOffsetMs(ms)).toISOString().slice(0, 19);
  }

  function axisLabel(seconds, incr) {
    const text = live().when(seconds * 1000); // "2026-03-02 08:15:02"
    if (incr >= 86400) return text.slice(0, 10);
    if (incr >= 3600) return text.slice(5, 16);
    return incr >= 60 ? text.slice(11, 16) : text.slice(11, 19);
  }

  function numeric(v) {
    if (typeof v === "boolean") return v ? 1 : 0;
    return typeof v === "number" ? v : null;
  }

  function draw(series, columns) {
    if (plot) plot.destroy();
    data = columns;
    const opts = {
      width: Math.max(320, chartEl.clientWidth),
      height: 320,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), tz),
      scales: { x: { time: true } },
      // The site's clock, 24 h, whatever the browser's locale.
      series: [{ value: (u, v) => (v == null ? "--" : live().when(v * 1000)) }, ...series],
      axes: [{ values: (u, splits, ai, space, incr) => splits.map((v) => axisLabel(v, incr)) }, { size: 70 }],
    };
    plot = new uPlot(opts, data, chartEl);
  }

  function showText(samples) {
    if (plot) { plot.destroy(); plot = null; }
    const rows = samples.slice(-200).reverse().map((s) =>
      `<tr><td>${live().when(s.ts_ms)}</td><td></td><td>${s.quality}</td></tr>`);
    const tbody = textTable.querySelector("tbody");
    tbody.innerHTML = rows.join("");
    [...tbody.rows].forEach((row, i) => {
      row.cells[1].textContent = String(samples[samples.length - 1 - i].value);
    });
    textTable.hidden = false;
  }

  async function load(startMs, endMs) {
    const range = endMs - startMs;
    const params = new URLSearchParams({ path, start: String(startMs), end: String(endMs) });
    if (range > RAW_MAX_MS) params.set("bucket", String(Math.max(1000, Math.ceil(range / MAX_POINTS))));
    statusEl.textContent = "Loading…";
    let body;
    try {
      const response = await fetch(`/api/v1/tags/history?${params}`, { headers: { Accept: "application/json" } });
      body = await response.json();
      if (!response.ok) throw new Error(body.detail || response.statusText);
    } catch (err) {
      statusEl.textContent = `Could not load the history: ${err.message}`;
      return;
    }
    textTable.hidden = true;
    if (body.buckets) {
      const used = body.buckets.filter((b) => b.count > 0);
      if (used.length && used.every((b) => b.avg === null)) {
        statusEl.textContent = `${used.length} periods of text values: open a shorter range to list them`;
        if (plot) { plot.destroy(); plot = null; }
        return;
      }
      draw(
        [{ label: "avg", stroke: "#1f5fbf", width: 2 },
         { label: "min", stroke: "#8aa6d6", dash: [4, 4] },
         { label: "max", stroke: "#8aa6d6", dash: [4, 4] }],
        [used.map((b) => b.start_ms / 1000), used.map((b) => b.avg), used.map((b) => b.min), used.map((b) => b.max)],
      );
      statusEl.textContent = `${used.length} periods of ${live().duration(body.bucket_ms)} (min, avg, max)`;
      return;
    }
    const samples = body.samples;
    const values = samples.map((s) => numeric(s.value));
    if (samples.length && values.every((v) => v === null)) {
      showText(samples);
      statusEl.textContent = `${samples.length} values (text)`;
      return;
    }
    draw([{ label: path.split("/").pop(), stroke: "#1f5fbf", width: 2 }],
      [samples.map((s) => s.ts_ms / 1000), values]);
    statusEl.textContent = `${samples.length} samples${body.truncated ? " (truncated: choose a shorter range)" : ""}`;
  }

  function select(button) {
    box.querySelectorAll("[data-range-ms]").forEach((b) => {
      b.classList.toggle("current", b === button);
      b.setAttribute("aria-pressed", String(b === button));
    });
  }

  function fromNow(ms, button) {
    follow = ms;
    select(button);
    const end = live().serverNow();
    const form = box.querySelector("[data-range-form]");
    form.elements.from.value = msToWall(end - ms);
    form.elements.to.value = msToWall(end);
    load(end - ms, end + 1000);
  }

  box.querySelectorAll("[data-range-ms]").forEach((button) => {
    button.addEventListener("click", () => fromNow(Number(button.dataset.rangeMs), button));
  });
  box.querySelector("[data-range-form]").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    const start = wallToMs(form.elements.from.value), end = wallToMs(form.elements.to.value);
    if (!(end > start)) { statusEl.textContent = "To must be after From."; return; }
    follow = null;
    select(null);
    load(start, end);
  });

  document.body.addEventListener("andon:tags", (event) => {
    if (follow === null || !plot || !data) return;
    const mine = event.detail.filter((t) => t.path === path && numeric(t.value) !== null);
    if (!mine.length) return;
    const cutoff = (live().serverNow() - follow) / 1000;
    for (const t of mine) {
      const x = t.ts_ms / 1000;
      if (x <= data[0][data[0].length - 1]) continue;
      data[0].push(x);
      for (let i = 1; i < data.length; i += 1) data[i].push(numeric(t.value));
    }
    while (data[0].length > 2 && data[0][0] < cutoff) data.forEach((column) => column.shift());
    plot.setData(data);
  });

  window.addEventListener("resize", () => {
    if (plot) plot.setSize({ width: Math.max(320, chartEl.clientWidth), height: 320 });
  });

  const initial = box.querySelector("[data-range-ms].current") || box.querySelector("[data-range-ms]");
  // live.js runs first (both deferred, in document order), so andonLive exists here.
  fromNow(Number(initial.dataset.rangeMs), initial);
})();
