// The SLO list: polls v1/summary and redraws the rows; filter and sortable columns.
"use strict";
(function () {
  const table = document.getElementById("slos");
  const tbody = table.tBodies[0];
  const status = document.getElementById("status");
  const filter = document.getElementById("filter");
  const refreshMs = Number(table.dataset.refreshMs) || 2000;
  const pol = JSON.parse(document.getElementById("policies").textContent);
  let sortKey = "name", sortDir = 1, slos = null, windows = [];

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k);
    return e;
  }
  const pct = (r) => (r === null ? "no data" : (r * 100).toFixed(2) + "%");
  const rate = (x) => (x === null || x === undefined ? "–" : x.toFixed(2));
  function duration(s) {
    if (s === null) return "–";
    if (s <= 0) return "spent";
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (d) return d + "d" + (h ? h + "h" : "");
    if (h) return h + "h" + (m ? m + "m" : "");
    if (m) return m + "m";
    return Math.ceil(s) + "s";
  }
  // v1/summary's columns as one object per SLO
  function views(c) {
    const out = c.name.map((name, k) => ({
      name, group: c.group[k], service: c.service[k], objective: c.objective[k],
      budget: c.budget_remaining_ratio[k], tte: c.time_to_exhaustion_s[k],
      burns: c.burn_rates.map((w) => w[k]), firing: [],
    }));
    for (const [alert, at] of Object.entries(c.firing)) for (const k of at) out[k].firing.push(alert);
    return out;
  }
  function href(v) {
    let h = "slo/" + encodeURIComponent(v.name);
    if (v.group) h += "?group=" + encodeURIComponent(v.group);
    return h;
  }
  function row(v) {
    const b = v.budget;
    const burns = {};
    windows.forEach((w, i) => { burns[w] = v.burns[i]; });
    const rows = pol.policies[pol.slo_policy[v.name]] || [];
    const ul = el("ul", { class: "burns" });
    for (const r of rows) {
      const li = el("li", {}, `${r.severity} ×${r.factor}: ${r.long} `);
      const lo = burns[r.long], sh = burns[r.short];
      li.append(el("span", lo >= r.factor ? { class: "hot" } : {}, rate(lo)));
      li.append(` · ${r.short} `);
      li.append(el("span", sh >= r.factor ? { class: "hot" } : {}, rate(sh)));
      ul.append(li);
    }
    const f = v.firing;
    const bar = el("span", { class: "bar" + (b !== null && b < 0.25 ? " low" : ""), "aria-hidden": "true" },
      el("span", { style: "width:" + (b === null ? 0 : Math.max(0, Math.min(1, b)) * 100).toFixed(1) + "%" }));
    const name = v.group ? `${v.name} [${v.group}]` : v.name;
    return el("tr", { "data-slo": v.name, "data-group": v.group || "" },
      el("th", { scope: "row" }, el("a", { href: href(v) }, name)),
      el("td", {}, v.service || "composite"),
      el("td", { class: "num" }, v.objective + "%"),
      el("td", { class: "budget" }, bar, el("span", { class: "num" }, pct(b))),
      el("td", {}, ul),
      el("td", { class: "alert" }, f.length ? el("span", { class: "firing" }, f.join(", ")) : "ok"),
      el("td", { class: "num" }, duration(v.tte)));
  }
  const keys = {
    name: (v) => v.name + "\u0000" + (v.group || ""),
    service: (v) => v.service || "",
    objective: (v) => v.objective,
    budget: (v) => (v.budget === null ? Infinity : v.budget),
    alert: (v) => -v.firing.length,
    exhaustion: (v) => (v.tte === null ? Infinity : v.tte),
  };
  function matches(v, q) {
    if (!q) return true;
    const hay = [v.name, v.group || "", v.service || "", v.firing.join(" ") || "ok"].join(" ").toLowerCase();
    return q.split(/\s+/).every((t) => hay.includes(t));
  }
  function render() {
    if (!slos) return;
    const q = filter.value.trim().toLowerCase();
    const sortBy = keys[sortKey];
    const shown = slos.filter((v) => matches(v, q)).sort((a, b) => {
      const x = sortBy(a), y = sortBy(b);
      return (x < y ? -1 : x > y ? 1 : 0) * sortDir || keys.name(a).localeCompare(keys.name(b));
    });
    // keep the keyboard focus on the same SLO's link across a redraw
    const focused = tbody.contains(document.activeElement) ? document.activeElement.closest("tr") : null;
    const key = focused ? [focused.dataset.slo, focused.dataset.group] : null;
    const frag = document.createDocumentFragment();
    for (const v of shown) frag.append(row(v));
    tbody.replaceChildren(frag);
    if (key) {
      for (const tr of tbody.rows) {
        if (tr.dataset.slo === key[0] && tr.dataset.group === key[1]) {
          tr.querySelector("a").focus({ preventScroll: true });
          break;
        }
      }
    }
    status.textContent = `${shown.length} of ${slos.length} SLOs` + (updated ? `, updated ${updated}` : "");
  }
  let updated = "";
  async function poll() {
    try {
      const r = await fetch("v1/summary", { credentials: "same-origin", cache: "no-store" });
      if (r.status === 401) { window.location.assign("login"); return; }
      if (!r.ok) throw new Error("HTTP " + r.status);
      const body = await r.json();
      slos = views(body.slos);
      windows = body.windows;
      updated = new Date().toLocaleTimeString();
      table.dataset.evaluatedAt = body.evaluated_at === null ? "" : String(body.evaluated_at);
      render();
    } catch (e) {
      status.textContent = "Could not refresh: " + e.message;
    } finally {
      setTimeout(poll, refreshMs);
    }
  }
  for (const btn of table.querySelectorAll("thead button")) {
    btn.addEventListener("click", () => {
      const k = btn.dataset.sort;
      sortDir = k === sortKey ? -sortDir : 1;
      sortKey = k;
      for (const th of table.tHead.rows[0].cells) th.removeAttribute("aria-sort");
      btn.parentElement.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
      render();
    });
  }
  filter.addEventListener("input", render);
  poll();
})();
