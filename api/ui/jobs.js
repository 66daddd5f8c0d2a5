// The jobs page: every job with status, progress, model, last loss and age, filtered by status,
// kept live by the tenant's stream (a state change reloads the list) and, while jobs train,
// a refresh of their progress every 2 s.
import { ACTIVE, STATUSES, age, api, apiKey, h, progressBar, statusBadge } from "./core.js";
import { formatNumber } from "./charts.js";
import { follow } from "./sse.js";

export async function renderJobs(main, params, signal) {
  const wanted = params.get("status") || "";
  const filter = h("select", { id: "status-filter", "aria-label": "Status", onchange: () => {
    location.hash = filter.value ? `#/jobs?status=${filter.value}` : "#/jobs";
  } }, h("option", { value: "" }, "all statuses"), STATUSES.map((s) => h("option", { value: s, selected: s === wanted }, s)));
  const body = h("tbody");
  const table = h("table", { class: "jobs", id: "jobs-table" },
    h("thead", {}, h("tr", {}, ["Job", "Status", "Progress", "Model", "Loss", "Age"].map((t) => h("th", {}, t)))), body);
  const empty = h("p", { class: "muted", hidden: true }, "No jobs yet: ", h("a", { href: "#/new" }, "start one"), ".");
  main.replaceChildren(h("div", { class: "page-head" }, h("h1", {}, "Jobs"), filter), h("div", { class: "card" }, table, empty));

  let jobs = [];
  async function load() {
    const query = wanted ? `&status=${wanted}` : "";
    jobs = (await api(`/jobs?limit=200&include=spec${query}`, { signal })).items;
    body.replaceChildren(...jobs.map(row));
    empty.hidden = jobs.length > 0;
  }
  await load();

  let pending = null;
  const reload = () => { pending = pending || setTimeout(() => { pending = null; load().catch(() => {}); }, 300); };
  follow("/jobs/stream", { key: apiKey, signal, onEvent: reload });
  const timer = setInterval(() => { if (jobs.some((job) => ACTIVE.has(job.status))) reload(); }, 2000);
  signal.addEventListener("abort", () => { clearInterval(timer); clearTimeout(pending); });
}

function row(job) {
  const progress = job.progress || {};
  const steps = progress.max_steps ? `${progress.step ?? 0}/${progress.max_steps}` : "";
  return h("tr", { "data-job": job.id, class: "link-row", onclick: () => { location.hash = `#/jobs/${job.id}`; } },
    h("td", {}, h("a", { href: `#/jobs/${job.id}` }, `#${job.id}`), " ", h("span", { class: "muted" }, job.name || "")),
    h("td", {}, statusBadge(job.status)),
    h("td", { class: "progress-cell" }, progressBar(progress), h("span", { class: "muted small" }, steps)),
    h("td", {}, job.spec ? job.spec.base_model : ""),
    h("td", { class: "num" }, formatNumber(progress.loss)),
    h("td", { class: "muted" }, age(job.created_at)));
}
