// Sweeps: the list (#/sweeps) and one sweep (#/sweeps/ID): its trials in a table sortable by the
// metric or a parameter, the metric against each parameter, and the trials' metric curves on one
// chart. Kept live by the sweep's stream (a trial's change of state, or an event of the sweep's own,
// reloads it).
import { age, api, apiKey, confirmAction, h, statusBadge } from "./core.js";
import { formatNumber, legend, lineChart } from "./charts.js";
import { metricSeries } from "./compare.js";
import { follow } from "./sse.js";

export async function renderSweeps(main, signal) {
  const sweeps = (await api("/sweeps?limit=200", { signal })).items;
  const rows = sweeps.map((s) => h("tr", { "data-sweep": s.id, class: "link-row", onclick: () => { location.hash = `#/sweeps/${s.id}`; } },
    h("td", {}, h("a", { href: `#/sweeps/${s.id}` }, `#${s.id}`), " ", h("span", { class: "muted" }, s.name || "")),
    h("td", {}, statusBadge(s.status)), h("td", {}, s.method), h("td", {}, `${s.trial_count}/${s.max_trials}`),
    h("td", {}, s.best ? `${s.metric.name} ${formatNumber(s.best.value)} (trial ${s.best.trial})` : "–"),
    h("td", {}, age(s.created_at))));
  main.replaceChildren(h("div", { class: "page-head" }, h("h1", {}, "Sweeps")), h("div", { class: "card" },
    rows.length ? h("table", { class: "jobs", id: "sweeps-table" },
      h("thead", {}, h("tr", {}, ["Sweep", "Status", "Method", "Trials", "Best", "Age"].map((t) => h("th", {}, t)))), h("tbody", {}, rows))
      : h("p", { class: "muted" }, "No sweeps yet: create one with ", h("code", {}, "traindock sweep create"), " or POST /sweeps.")));
}

export async function renderSweep(main, sweepId, signal) {
  let sweep = await api(`/sweeps/${sweepId}`, { signal });
  const paths = Object.keys(sweep.parameters);
  let sortKey = "metric", ascending = sweep.metric.goal === "minimize";
  const table = h("table", { class: "jobs", id: "trials-table" });
  const scatter = h("div", { id: "sweep-scatter" });
  const curves = h("div", { id: "sweep-curves" });
  const curvesKey = h("div");
  const head = h("div", { class: "page-head" });
  const cancel = h("button", { class: "danger", id: "cancel-sweep", onclick: async () => {
    if (!(await confirmAction(`Cancel sweep #${sweepId} and its active trials?`, "Cancel sweep"))) return;
    sweep = await api(`/sweeps/${sweepId}/cancel`, { method: "POST", signal });
    draw();
  } }, "Cancel sweep");
  const pathPick = h("select", { id: "scatter-path", "aria-label": "Parameter", onchange: drawScatter },
    paths.map((p) => h("option", { value: p }, p)));
  main.replaceChildren(head,
    h("div", { class: "card" }, h("h2", {}, "Trials"), table),
    h("div", { class: "card" }, h("div", { class: "card-head" }, h("h2", {}, `${sweep.metric.name} by parameter`), pathPick), scatter),
    h("div", { class: "card" }, h("h2", {}, `${sweep.metric.name} of each trial`), curves, curvesKey));

  function value(trial, key) { return key === "metric" ? trial.metric : trial.params[key]; }
  function sorted() {
    return [...sweep.trials].sort((a, b) => {
      const [x, y] = [value(a, sortKey), value(b, sortKey)];
      if (x == null || y == null) return (x == null) - (y == null);
      return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
    });
  }
  function header(label, key) {
    const mark = sortKey === key ? (ascending ? " ▲" : " ▼") : "";
    return h("th", { class: "sortable", "data-sort": key, onclick: () => {
      ascending = sortKey === key ? !ascending : true;
      sortKey = key;
      drawTable();
    } }, label + mark);
  }
  function drawTable() {
    const best = sweep.best && sweep.best.job_id;
    table.replaceChildren(
      h("thead", {}, h("tr", {}, h("th", {}, "Trial"), h("th", {}, "Status"), paths.map((p) => header(p, p)),
        header(sweep.metric.name, "metric"), h("th", {}, "Step"))),
      h("tbody", {}, sorted().map((t) => h("tr", { "data-trial": t.trial, class: "link-row", onclick: () => { location.hash = `#/jobs/${t.job_id}`; } },
        h("td", {}, h("a", { href: `#/jobs/${t.job_id}` }, `#${t.trial}`), " ", h("span", { class: "muted" }, `job ${t.job_id}`),
          t.job_id === best ? h("span", { class: "badge best" }, "best") : null),
        h("td", {}, statusBadge(t.status)), paths.map((p) => h("td", {}, formatNumber(t.params[p]))),
        h("td", { class: "metric" }, formatNumber(t.metric)), h("td", {}, t.metric_step ?? "–")))));
  }
  function drawScatter() {
    const path = pathPick.value;
    const numeric = sweep.trials.filter((t) => typeof t.params[path] === "number" && t.metric != null);
    const positive = numeric.every((t) => t.params[path] > 0);
    const spread = positive && numeric.length && Math.max(...numeric.map((t) => t.params[path])) / Math.min(...numeric.map((t) => t.params[path])) > 20;
    const x = (v) => (spread ? Math.log10(v) : v);
    const series = numeric.map((t) => ({ name: `#${t.trial}`, points: [[x(t.params[path]), t.metric]] }));
    lineChart(scatter, series, { xLabel: spread ? `log10 ${path}` : path, empty: "No finished values yet" });
  }
  async function drawCurves() {
    const series = await metricSeries(sweep.trials.map((t) => t.job_id), sweep.metric.name, signal,
      (id) => { const t = sweep.trials.find((trial) => trial.job_id === id); return `#${t.trial} ${paths.map((p) => formatNumber(t.params[p])).join(" ")}`; });
    lineChart(curves, series, { empty: "No points yet" });
    curvesKey.replaceChildren(legend(series));
  }
  function draw() {
    const running = sweep.status === "running";
    head.replaceChildren(h("h1", {}, `Sweep #${sweep.id} `, h("span", { class: "muted" }, sweep.name || ""), " ", statusBadge(sweep.status)),
      h("span", { class: "muted" }, `${sweep.method}, ${sweep.trial_count}/${sweep.max_trials} trials, ${sweep.metric.goal} ${sweep.metric.name}`
        + (sweep.rung_steps.length ? `, ASHA at steps ${sweep.rung_steps.join(", ")}` : "")),
      ...(running ? [cancel] : []));
    drawTable();
    drawScatter();
    drawCurves().catch(() => {});
  }
  draw();

  let pending = null;
  const reload = () => { pending = pending || setTimeout(async () => {
    pending = null;
    try { sweep = await api(`/sweeps/${sweepId}`, { signal }); draw(); } catch { /* the next change retries */ }
  }, 300); };
  follow(`/sweeps/${sweepId}/stream`, { key: apiKey, signal, onEvent: reload });
  signal.addEventListener("abort", () => clearTimeout(pending));
}
