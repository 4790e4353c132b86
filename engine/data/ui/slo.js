// One SLO: charts of its history (uPlot), its alerts, gate, incidents, changes, corrections.
"use strict";
(function () {
  const main = document.getElementById("slo");
  const api = main.dataset.api, query = main.dataset.query;
  const name = main.dataset.name, service = main.dataset.service;
  const refreshMs = Math.max(2000, Number(main.dataset.refreshMs) || 2000);
  const tierSelect = document.getElementById("tier");
  const chartStatus = document.getElementById("chart-status");
  const palette = ["#0b5cad", "#a50e0e", "#1b6e20", "#8a4b00", "#6a2c91", "#00676b", "#4a4a4a"];
  let charts = {}, shape = "", history = null;

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k);
    return e;
  }
  const when = (t) => (t === null || t === undefined ? "–" : new Date(t * 1000).toLocaleString());
  const pct = (r) => (r === null || r === undefined ? "no data" : (r * 100).toFixed(2) + "%");
  async function get(url) {
    const r = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    if (r.status === 401) { window.location.assign("../login"); throw new Error("signed out"); }
    return r;
  }
  function table(head, rows) {
    const t = el("table", {}, el("thead", {}, el("tr", {}, ...head.map((h) => el("th", { scope: "col" }, h)))));
    const b = el("tbody");
    for (const r of rows) b.append(el("tr", {}, ...r.map((c) => el("td", {}, c))));
    t.append(b);
    return t;
  }
  function fill(id, ...kids) { document.getElementById(id).replaceChildren(...kids); }

  // -- charts ----------------------------------------------------------------------
  function span(s) {
    for (const [u, n] of [["d", 86400], ["h", 3600], ["m", 60]]) {
      if (s >= n && s % n === 0) return s / n + u;
    }
    return s + "s";
  }
  const tierLabel = (t) => `Last ${span(t.span_s)}, a point per ${span(t.resolution_s)}`;
  function specs(h, tier) {
    const t = tier.t, rows = h.rows;
    const line = (label, data, i, dash) => ({ label, data, stroke: palette[i % palette.length], width: 2, dash });
    const windowsOf = (k) => [...new Set(rows.map((r) => r[k]))];
    const burnChart = (k) => {
      const s = windowsOf(k).map((w, i) => line(w + " burn rate", tier.burn_rates[w], i));
      rows.forEach((r, i) => s.push(line(`${r.severity} factor ×${r.factor} (${r.long}/${r.short})`,
        t.map(() => r.factor), i, [6, 4])));
      return s;
    };
    return {
      "c-long": { series: burnChart("long"), y: "burn rate" },
      "c-short": { series: burnChart("short"), y: "burn rate" },
      "c-budget": { series: [line("budget remaining %", tier.budget_remaining.map((b) => (b === null ? null : b * 100)), 0)], y: "%" },
      "c-events": { series: [line("good", tier.good, 2), line("bad", tier.bad, 1)], y: "events" },
    };
  }
  function draw() {
    if (!history) return;
    const tier = history.tiers[Number(tierSelect.value) || 0];
    const sp = specs(history, tier);
    const key = tierSelect.value + "|" + JSON.stringify(Object.values(sp).map((c) => c.series.map((s) => s.label)));
    for (const [id, c] of Object.entries(sp)) {
      const data = [tier.t, ...c.series.map((s) => s.data)];
      if (key === shape && charts[id]) { charts[id].setData(data); continue; }
      if (charts[id]) charts[id].destroy();
      const box = document.getElementById(id);
      charts[id] = new uPlot({
        width: Math.max(320, box.clientWidth || 800), height: 220,
        scales: { x: { time: true } },
        axes: [{}, { label: c.y }],
        series: [{}, ...c.series.map(({ data, ...s }) => s)],
      }, data, box);
    }
    shape = key;
    const n = tier.t.length;
    chartStatus.textContent = n ? `${n} points, last at ${when(tier.t[n - 1])}` : "No data yet";
  }
  async function loadHistory() {
    try {
      const r = await get(api + "/history" + query);
      if (!r.ok) throw new Error("HTTP " + r.status);
      history = await r.json();
      if (!tierSelect.options.length) {
        history.tiers.forEach((t, i) => tierSelect.append(el("option", { value: String(i) }, tierLabel(t))));
      }
      draw();
    } catch (e) {
      chartStatus.textContent = "Could not load the history: " + e.message;
    }
  }
  tierSelect.addEventListener("change", () => { shape = ""; draw(); });
  window.addEventListener("resize", () => {
    for (const [id, c] of Object.entries(charts)) c.setSize({ width: Math.max(320, document.getElementById(id).clientWidth), height: 220 });
  });

  // -- sections --------------------------------------------------------------------
  async function loadAlerts() {
    const r = await get(api + query);
    if (!r.ok) { fill("alerts", el("p", {}, "Could not load: HTTP " + r.status)); return; }
    const v = await r.json();
    const rows = Object.entries(v.alerts).map(([sev, a]) => [
      sev,
      a.firing ? el("span", { class: "firing" }, "firing") : "ok",
      a.firing ? when(a.since) : "–",
      a.row ? `${a.row.long}/${a.row.short} ×${a.row.factor}` : "–",
    ]);
    for (const b of v.budget_alerts || []) {
      rows.push([`${b.alert} (${b.severity})`, b.firing ? el("span", { class: "firing" }, "firing") : "ok",
        b.firing ? when(b.since) : "–", b.decision || "–"]);
    }
    fill("alerts", rows.length ? table(["Alert", "State", "Since", "Firing row"], rows) : el("p", {}, "No alerts configured."));
  }
  async function loadGate() {
    const r = await get("../v1/gates/" + encodeURIComponent(service));
    if (!r.ok) { fill("gate", el("p", {}, "No gate: HTTP " + r.status)); return; }
    const g = await r.json();
    fill("gate",
      el("p", {}, "Decision for ", el("strong", {}, g.service), ": ",
        el("span", { class: "decision-" + g.decision }, g.decision)),
      el("ul", {}, ...g.reasons.map((x) => el("li", {}, x))));
  }
  async function loadIncidents() {
    const r = await get("../v1/incidents?limit=20&service=" + encodeURIComponent(service));
    if (r.status === 404) { fill("incidents", el("p", {}, "Incidents are not configured.")); return; }
    if (!r.ok) { fill("incidents", el("p", {}, "Could not load: HTTP " + r.status)); return; }
    const list = (await r.json()).incidents.filter((i) => i.slos.includes(name));
    fill("incidents", list.length
      ? table(["Incident", "State", "Opened", "Acknowledged", "Closed"],
        list.map((i) => [i.id, i.state, when(i.opened_at), when(i.acknowledged_at), when(i.closed_at)]))
      : el("p", {}, "No incidents."));
  }
  async function loadChanges() {
    const r = await get("../v1/changes?limit=20&service=" + encodeURIComponent(service));
    if (!r.ok) { fill("changes", el("p", {}, "No changes: HTTP " + r.status)); return; }
    const list = (await r.json()).changes;
    fill("changes", list.length
      ? table(["At", "Kind", "Version", "Budget consumed"], list.map((c) => {
        const mine = c.slos.find((s) => s.slo === name);
        return [when(c.at), c.kind, c.version || "–", pct(mine ? mine.error_budget_consumed_ratio : null)];
      }))
      : el("p", {}, "No changes recorded."));
  }
  async function loadCorrections() {
    const r = await get("../v1/corrections");
    if (!r.ok) { fill("corrections", el("p", {}, "Could not load: HTTP " + r.status)); return; }
    const list = (await r.json()).corrections.filter((c) => c.applies_to.includes(name));
    fill("corrections", list.length
      ? table(["Name", "Start", "End", "Recurrence", "Reason"],
        list.map((c) => [c.name, c.start, c.end, c.recurrence || "–", c.reason || "–"]))
      : el("p", {}, "No corrections."));
  }
  async function refresh() {
    const jobs = [loadHistory(), loadAlerts(), loadCorrections()];
    if (service) jobs.push(loadGate(), loadIncidents(), loadChanges());
    await Promise.allSettled(jobs);
    setTimeout(refresh, refreshMs);
  }
  if (!service) for (const s of document.querySelectorAll("[data-needs-service]")) s.hidden = true;
  refresh();
})();
