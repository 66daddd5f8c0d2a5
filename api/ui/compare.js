// Compare: the loss curves of chosen jobs on one chart. The choice lives in the address
// (#/compare?ids=3,5), so a comparison can be bookmarked.
import { api, h, statusBadge } from "./core.js";
import { legend, lineChart } from "./charts.js";

// One metric of each job, thinned for a chart: [{name, points: [[step, value]]}] (also the sweep page's curves).
export async function metricSeries(ids, metric, signal, nameOf) {
  return Promise.all(ids.map(async (id) => {
    const metrics = await api(`/jobs/${id}/metrics?name=${encodeURIComponent(metric)}&max_points=1000`, { signal });
    return { name: nameOf(id), points: metrics.items.map((p) => [p.step, p.value]) };
  }));
}

export async function renderCompare(main, params, signal) {
  const chosen = new Set((params.get("ids") || "").split(",").filter(Boolean).map(Number));
  const jobs = (await api("/jobs?limit=200&include=spec", { signal })).items;
  const logToggle = h("input", { type: "checkbox", id: "log-scale", onchange: draw });
  const chart = h("div", { id: "compare-chart" });
  const key = h("div");
  const picks = jobs.map((job) => h("label", { class: "pick" },
    h("input", { type: "checkbox", value: job.id, checked: chosen.has(job.id), "data-job": job.id, onchange: (event) => {
      if (event.target.checked) chosen.add(job.id); else chosen.delete(job.id);
      location.hash = `#/compare?ids=${[...chosen].sort((a, b) => a - b).join(",")}`;
    } }),
    ` #${job.id} ${job.name || ""} `, statusBadge(job.status), h("span", { class: "muted small" }, ` ${job.spec.base_model}`)));
  main.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Compare")),
    h("div", { class: "compare" },
      h("div", { class: "card picks" }, h("h2", {}, "Jobs"), picks.length ? picks : h("p", { class: "muted" }, "No jobs yet.")),
      h("div", { class: "card" },
        h("div", { class: "card-head" }, h("h2", {}, "loss"), h("label", { class: "toggle" }, logToggle, " log scale")),
        chart, key)));

  const ids = [...chosen].sort((a, b) => a - b);
  const series = await metricSeries(ids, "loss", signal, (id) => {
    const job = jobs.find((j) => j.id === id);
    return `#${id}${job && job.name ? ` ${job.name}` : ""}`;
  });
  function draw() {
    lineChart(chart, series, { logY: logToggle.checked, empty: ids.length ? "No loss points yet" : "Choose jobs on the left" });
    key.replaceChildren(legend(series));
  }
  draw();
}
