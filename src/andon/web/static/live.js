// Live updates pushed by the server (GET /api/v1/live, server-sent events), applied in place.
// A page says what it wants on <body>: data-live-tags="<tag path prefix>" and/or
// data-live-states="<asset path prefix>" ("" = everything). Elements that show live data carry:
//   data-tag="<path>" (value), data-tag-quality, data-tag-time, data-tag-row (quality class);
//   data-asset-state="<asset>" (state badge), data-since-of, data-mode-of, data-reason-of;
//   class "timer" with data-since="<epoch ms>" (ticks every second on the server's clock).
// Pages react to "andon:tags" and "andon:state" events on <body> (e.g. htmx hx-trigger).
(function () {
  "use strict";
  const body = document.body;
  const tz = body.dataset.tz || "UTC";
  // Timers tick on the server's clock: a panel PC's own clock is often minutes off.
  const clockOffset = Number(body.dataset.serverNow || Date.now()) - Date.now();
  const serverNow = () => Date.now() + clockOffset;
  const FLOAT_TYPES = new Set([9, 10]);
  // Most severe first, as andon.web.plant_view.SEVERITY: a group tile takes the first present.
  const SEVERITY = ["unplanned_downtime", "blocked", "starved", "setup", "planned_downtime",
    "not_scheduled", "running"];
  const lastTs = new Map();

  const timeFormat = new Intl.DateTimeFormat("en-CA", {
    timeZone: tz, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });

  function when(ms) {
    const p = Object.fromEntries(timeFormat.formatToParts(new Date(ms)).map((x) => [x.type, x.value]));
    return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}`;
  }

  function duration(ms) {
    const seconds = Math.max(0, Math.round(ms / 1000));
    const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    const two = (n) => String(n).padStart(2, "0");
    if (h) return `${h} h ${two(m)} min`;
    if (m) return `${m} min ${two(s)} s`;
    return `${s} s`;
  }

  function formatValue(value, datatype) {
    if (value === null || value === undefined) return "null";
    if (typeof value === "boolean") return value ? "true" : "false";
    if (typeof value === "number") {
      const decimals = FLOAT_TYPES.has(datatype) || !Number.isInteger(value) ? 2 : 0;
      return value.toLocaleString("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
    }
    if (Array.isArray(value)) return JSON.stringify(value);
    return String(value);
  }

  function each(attr, key, fn) {
    document.querySelectorAll(`[${attr}="${CSS.escape(key)}"]`).forEach(fn);
  }

  function setStateClass(el, type) {
    [...el.classList].filter((c) => c.startsWith("st-")).forEach((c) => el.classList.remove(c));
    el.classList.add(`st-${type}`);
  }

  function applyTags(items) {
    for (const t of items) {
      const previous = lastTs.get(t.path);
      if (previous !== undefined && t.ts_ms < previous) continue; // an older value never wins
      lastTs.set(t.path, t.ts_ms);
      const quality = t.online ? t.quality : "STALE";
      each("data-tag", t.path, (el) => { el.textContent = formatValue(t.value, t.datatype); });
      each("data-tag-quality", t.path, (el) => { el.textContent = quality; });
      each("data-tag-time", t.path, (el) => { el.textContent = when(t.ts_ms); });
      each("data-tag-row", t.path, (el) => {
        ["q-good", "q-bad", "q-stale"].forEach((c) => el.classList.remove(c));
        el.classList.add(`q-${quality.toLowerCase()}`);
      });
    }
    body.dispatchEvent(new CustomEvent("andon:tags", { detail: items }));
  }

  function regroup(tile) {
    const badges = [...tile.querySelectorAll("[data-asset-state]")];
    if (!tile.querySelector(".badges")) return; // an asset's own tile: its badge is its state
    const types = badges.map((b) => [...b.classList].find((c) => c.startsWith("st-")).slice(3));
    setStateClass(tile, SEVERITY.find((t) => types.includes(t)) || "unknown");
    const running = tile.querySelector(".running-count");
    if (running) running.textContent = String(types.filter((t) => t === "running").length);
  }

  function applyStates(items) {
    const tiles = new Set();
    for (const s of items) {
      each("data-asset-state", s.asset, (el) => {
        setStateClass(el, s.state_type);
        const name = el.querySelector(".state-name");
        if (name) name.textContent = s.name;
        const tile = el.closest("[data-tile]");
        if (tile) tiles.add(tile);
      });
      each("data-since-of", s.asset, (el) => { el.dataset.since = String(s.since_ms); });
      each("data-mode-of", s.asset, (el) => { el.textContent = s.mode; });
      each("data-reason-of", s.asset, (el) => { el.textContent = s.reason || "–"; });
      document.querySelectorAll(`[data-tile="${CSS.escape(s.asset)}"]`).forEach((tile) => {
        if (!tile.querySelector(".badges")) setStateClass(tile, s.state_type);
      });
    }
    tiles.forEach(regroup);
    document.querySelectorAll("[data-count-running]").forEach((el) => {
      const scope = document.querySelector(el.dataset.countRunning) || document;
      el.textContent = String(scope.querySelectorAll("[data-asset-state].st-running").length);
    });
    tickTimers();
    body.dispatchEvent(new CustomEvent("andon:state", { detail: items }));
  }

  function tickTimers() {
    const now = serverNow();
    document.querySelectorAll(".timer[data-since]").forEach((el) => {
      const since = Number(el.dataset.since);
      if (el.dataset.since !== "" && Number.isFinite(since)) el.textContent = duration(now - since);
    });
  }

  const status = document.getElementById("live-status");
  function showStatus(kind, text) {
    if (!status) return;
    status.className = `live-status ${kind}`;
    status.textContent = text;
  }

  function connect() {
    const wantsTags = body.dataset.liveTags !== undefined;
    const wantsStates = body.dataset.liveStates !== undefined;
    if (!wantsTags && !wantsStates) return;
    const params = new URLSearchParams();
    params.set("events", [wantsTags && "tags", wantsStates && "states"].filter(Boolean).join(","));
    if (wantsTags) params.set("tag_prefix", body.dataset.liveTags);
    if (wantsStates) params.set("asset_prefix", body.dataset.liveStates);
    const source = new EventSource(`/api/v1/live?${params}`);
    let ended = null;
    source.onopen = () => { ended = null; showStatus("ok", "● Live"); };
    source.addEventListener("tags", (e) => applyTags(JSON.parse(e.data)));
    source.addEventListener("states", (e) => applyStates(JSON.parse(e.data)));
    source.addEventListener("end", (e) => {
      ended = JSON.parse(e.data).reason;
      showStatus("bad", `Live updates paused: ${ended}; reconnecting…`);
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        // Refused (e.g. the session expired): EventSource gives up; a reload logs in again.
        showStatus("bad", "Live updates stopped: reload the page");
        return;
      }
      // Otherwise it reconnects by itself (after the server's "retry"), from a fresh snapshot.
      if (!ended) showStatus("warn", "Reconnecting…");
    };
    window.addEventListener("pagehide", () => source.close());
  }

  window.andonLive = { when, duration, formatValue, serverNow };
  tickTimers();
  setInterval(tickTimers, 1000);
  connect();
})();
