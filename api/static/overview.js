// The live overview page: reads the API's own endpoints with the key the person pasted, refreshes every 15 s.
(function () {
  "use strict";
  const params = new URLSearchParams(location.search);
  if (params.get("key")) {
    localStorage.setItem("agenttrace-key", params.get("key"));
    history.replaceState(null, "", location.pathname);  // keep the key out of the address bar and history
  }
  const $ = (id) => document.getElementById(id);
  const charts = {};
  let timer = null;

  async function api(path, body) {
    const opts = { headers: { authorization: "Bearer " + localStorage.getItem("agenttrace-key") } };
    if (body) { opts.method = "POST"; opts.body = JSON.stringify(body); opts.headers["content-type"] = "application/json"; }
    const r = await fetch(path, opts);
    if (r.status === 401 || r.status === 403) { throw Object.assign(new Error("key refused"), { auth: true }); }
    if (!r.ok) { throw new Error(path + ": HTTP " + r.status); }
    return r.json();
  }

  const fmt = (v, digits) => v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US", { maximumFractionDigits: digits });
  function setStat(id, value, digits, suffix) {
    const el = $(id);
    el.dataset.value = value === null || value === undefined ? "" : String(value);
    el.textContent = fmt(value, digits) + (value === null || value === undefined ? "" : suffix || "");
  }

  function rows(table, list, cells) {
    const tbody = $(table).querySelector("tbody");
    tbody.replaceChildren(...list.map((item) => {
      const tr = document.createElement("tr");
      for (const [text, cls] of cells(item)) {
        const td = document.createElement("td");
        td.textContent = text;
        if (cls) td.className = cls;
        tr.appendChild(td);
      }
      return tr;
    }));
  }

  function plot(id, xs, ys) {
    const el = $(id);
    const width = Math.max(300, el.clientWidth || 420);
    const data = [xs, ys];
    if (charts[id]) { charts[id].setData(data); return; }
    charts[id] = new uPlot({ width, height: 180, legend: { show: false },
      series: [{}, { stroke: "#5794f2", fill: "rgba(87,148,242,.15)", spanGaps: true }],
      axes: [{ stroke: "#8e8e8e" }, { stroke: "#8e8e8e" }] }, data, el);
  }

  async function top(by, from, to) {
    const range = { from: new Date(from).toISOString(), to: new Date(to).toISOString() };
    const one = (field, agg) => ({ target: "metrics", refId: field, payload: { field, aggregation: agg, group_by: by } });
    const res = await api("/grafana/query", { range, intervalMs: to - from, maxDataPoints: 1,
      targets: [one("cost", "sum"), one("calls", "sum")] });
    const totals = {};
    for (const series of res) {
      const metric = series.refId;  // grouped series are named by their group value
      const name = series.target;
      const sum = (series.datapoints || []).reduce((a, p) => a + (p[0] || 0), 0);
      totals[name] = totals[name] || { name, cost: 0, calls: 0 };
      totals[name][metric === "calls" ? "calls" : "cost"] += sum;
    }
    return Object.values(totals).sort((a, b) => b.cost - a.cost).slice(0, 10);
  }

  async function refresh() {
    const seconds = Number($("range").value);
    const to = Date.now(), from = to - seconds * 1000;
    const q = "from=" + encodeURIComponent(new Date(from).toISOString()) + "&to=" + encodeURIComponent(new Date(to).toISOString());
    const bucket = seconds <= 21600 ? "minute" : seconds <= 172800 ? "hour" : "day";
    try {
      const [summary, series, agents, history, topAgents, topModels] = await Promise.all([
        api("/api/stats/summary?" + q), api("/api/stats/timeseries?bucket=" + bucket + "&" + q),
        api("/api/agents"), api("/api/alert-history?kind=transition&limit=10&" + q),
        top("agent", from, to), top("model", from, to)]);
      setStat("stat-calls", summary.calls, 0);
      setStat("stat-cost", summary.cost_usd, 4);
      setStat("stat-error-rate", summary.error_rate === null || summary.error_rate === undefined ? null : summary.error_rate * 100, 2, "%");
      setStat("stat-p95", summary.p95_latency_ms, 1);
      setStat("stat-tokens", (summary.tokens_in || 0) + (summary.tokens_out || 0), 0);
      const up = agents.agents.filter((a) => a.status === "up").length;
      setStat("stat-agents", up, 0, " / " + agents.agents.length);
      const xs = series.points.map((p) => Date.parse(p.time.replace(" ", "T") + (p.time.endsWith("Z") ? "" : "Z")) / 1000);
      plot("chart-calls", xs, series.points.map((p) => p.calls));
      plot("chart-cost", xs, series.points.map((p) => p.cost_usd));
      plot("chart-error-rate", xs, series.points.map((p) => p.error_rate === null ? null : p.error_rate * 100));
      plot("chart-p95", xs, series.points.map((p) => p.p95_latency_ms));
      rows("top-agents", topAgents, (r) => [[r.name], [fmt(r.cost, 4)], [fmt(r.calls, 0)]]);
      rows("top-models", topModels, (r) => [[r.name], [fmt(r.cost, 4)], [fmt(r.calls, 0)]]);
      rows("agents", agents.agents, (a) => [[a.agent_id], [a.status, a.status], [a.last_seen]]);
      rows("alerts", history.history, (h) => [[h.timestamp], [h.state, h.state], [h.message]]);
      $("status").textContent = "updated " + new Date().toLocaleTimeString();
      $("main").dataset.loaded = "true";
    } catch (err) {
      if (err.auth) { showLogin(); return; }
      $("status").textContent = "error: " + err.message;
    }
  }

  function showLogin() {
    clearInterval(timer);
    $("main").hidden = true;
    $("login").hidden = false;
    $("status").textContent = "need an API key";
  }

  function start() {
    $("login").hidden = true;
    $("main").hidden = false;
    refresh();
    clearInterval(timer);
    timer = setInterval(refresh, 15000);
  }

  $("login").addEventListener("submit", (e) => { e.preventDefault(); localStorage.setItem("agenttrace-key", $("key").value.trim()); start(); });
  $("range").addEventListener("change", refresh);
  if (localStorage.getItem("agenttrace-key")) start(); else showLogin();
})();
