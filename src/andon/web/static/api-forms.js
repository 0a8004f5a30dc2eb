// Edit dialogs of the supervisor and admin pages: a <form data-api-url data-api-method> is sent
// as JSON to the /api/v1 endpoint it names (the session cookie logs it in), so the pages share
// the API's validation, roles and audit trail. Wall-clock inputs (datetime-local) are read in the
// site's timezone (data-tz), not the browser's. On success the dialog closes and every fragment
// listening for "andon:changed" reloads; on error the API's message is shown in the form.
(function () {
  "use strict";

  function tzOffsetMs(utcMs, tz) {
    const parts = new Intl.DateTimeFormat("en-US", {
      timeZone: tz, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    }).formatToParts(new Date(utcMs));
    const p = Object.fromEntries(parts.map((x) => [x.type, x.value]));
    const wall = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second);
    return wall - Math.floor(utcMs / 1000) * 1000;
  }

  // The instants "2026-03-02T08:00[:05]" names on the site's clock, earliest first: none in a
  // spring-forward gap (that wall time never happens), two in a fall-back hour (it happens
  // twice), else one.
  function wallMs(text) {
    const [day, clock] = text.split("T");
    const [y, mo, d] = day.split("-").map(Number);
    const [h, mi, s] = (clock || "00:00").split(":").map(Number);
    return Date.UTC(y, mo - 1, d, h, mi, s || 0);
  }

  // Whether a field still holds the value it was shown with. A browser writes a datetime's
  // value its own way ("08:00" for "08:00:00"), so those compare as times, not as text.
  function untouched(el) {
    const initial = el.dataset.initial || "";
    if (el.type === "datetime-local" && el.value && initial) {
      return wallMs(el.value) === wallMs(initial);
    }
    return el.value === initial;
  }

  function wallInstants(text, tz) {
    const wall = wallMs(text);
    const found = new Set();
    // Every offset the zone has around that day; an instant fits when its own offset is the one.
    for (const probe of [wall - 86400000, wall, wall + 86400000]) {
      const candidate = wall - tzOffsetMs(probe, tz);
      if (tzOffsetMs(candidate, tz) === wall - candidate) found.add(candidate);
    }
    return [...found].sort((a, b) => a - b);
  }

  // One instant as ISO 8601 UTC, or an Error saying why the wall time names none or two.
  function wallToIso(text, tz) {
    const instants = wallInstants(text, tz);
    const shown = text.replace("T", " ");
    if (instants.length === 0) {
      throw new Error(`${shown} does not exist on the site's clock (${tz}): the clocks jump ` +
        "forward over it; give a time before or after");
    }
    if (instants.length > 1) {
      throw new Error(`${shown} happens twice on the site's clock (${tz}): the clocks go back ` +
        "over it; give a time outside that hour, or use the API with an explicit UTC offset");
    }
    return new Date(instants[0]).toISOString();
  }

  function fieldValue(el, tz) {
    if (el.value === "") {
      if (el.dataset.nullEmpty !== undefined) return null;
      if (el.dataset.omitEmpty !== undefined) return undefined;
      return "";
    }
    if (el.type === "datetime-local") {
      // An untouched value goes back as the exact instant it was shown from: the wall text has
      // no milliseconds, and in a fall-back hour it would not say which of the two it was.
      if (el.dataset.instant !== undefined && untouched(el)) {
        return new Date(Number(el.dataset.instant)).toISOString();
      }
      return wallToIso(el.value, tz);
    }
    if (el.type === "number") return Number(el.value);
    if (el.dataset.bool !== undefined) return el.value === "true";
    if (el.dataset.int !== undefined) return parseInt(el.value, 10);
    return el.value;
  }

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function errorText(status, body) {
    const detail = body && body.detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      return detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
    }
    return `the server answered ${status}`;
  }

  async function submit(form) {
    const tz = form.dataset.tz || "UTC";
    const onlyChanged = form.dataset.sendChanged !== undefined;
    const alert = form.querySelector("[role=alert]");
    const status = form.querySelector(".status");
    let url = form.dataset.apiUrl;
    alert.textContent = "";
    const body = {};
    const query = new URLSearchParams();
    for (const el of form.elements) {
      if (!el.name || el.disabled) continue;
      const placeholder = `{${el.name}}`;
      if (url.includes(placeholder)) {
        url = url.replace(placeholder, el.value.split("/").map(encodeURIComponent).join("/"));
        continue;
      }
      if (onlyChanged && el.name !== "comment" && untouched(el)) continue;
      let value;
      try {
        value = fieldValue(el, tz);
      } catch (err) {
        const label = form.querySelector(`label[for="${el.id}"]`);
        alert.textContent = `${label ? label.textContent.trim() : el.name}: ${err.message}`;
        return;
      }
      if (value === undefined) continue;
      if (el.dataset.inQuery !== undefined) query.set(el.name, value === null ? "" : value);
      else body[el.name] = value;
    }
    const method = form.dataset.apiMethod || "POST";
    if ([...query.keys()].length) url += (url.includes("?") ? "&" : "?") + query.toString();
    status.textContent = "Saving\u2026";
    let response;
    try {
      response = await fetch(url, {
        method,
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json",
          Accept: "application/json",
          // For browsers that send neither Origin nor Sec-Fetch-Site (see andon.web.csrf).
          "X-CSRF-Token": csrfToken(),
        },
        body: method === "DELETE" ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      status.textContent = "";
      alert.textContent = `The server cannot be reached: ${err}`;
      return;
    }
    status.textContent = "";
    if (!response.ok) {
      let parsed = null;
      try { parsed = await response.json(); } catch (_) { /* not JSON */ }
      alert.textContent = errorText(response.status, parsed);
      return;
    }
    const dialog = form.closest("dialog");
    if (dialog) dialog.close();
    const flash = document.getElementById("flash");
    if (flash) flash.textContent = form.dataset.done || "Saved.";
    document.body.dispatchEvent(new CustomEvent("andon:changed", { bubbles: true }));
  }

  document.addEventListener("submit", (event) => {
    const form = event.target.closest("form[data-api-url]");
    if (!form) return;
    event.preventDefault();
    submit(form);
  });

  // A form or history loaded into the dialog opens it.
  document.addEventListener("htmx:afterSwap", (event) => {
    const target = event.detail.target;
    if (target && target.id === "dialog-body") {
      const dialog = target.closest("dialog");
      if (dialog && !dialog.open) dialog.showModal();
      const first = target.querySelector("input:not([type=hidden]), select, textarea");
      if (first) first.focus();
    }
  });

  document.addEventListener("click", (event) => {
    const close = event.target.closest("[data-close-dialog]");
    if (close) close.closest("dialog").close();
  });

  window.andonForms = { wallInstants, wallToIso };
})();
