// One job: live curves (loss and eval_loss, learning rate, a preference job's reward margins and
// accuracies; log scale on request), progress with
// phase, ETA and throughput, sample generations per step (samples.js), events, attempts,
// checkpoints with downloads, cancel / pause / resume, and the spec. The page reads the job (and its stream position), the thinned series and
// the lists once, then follows the job's stream from that position.
import { allPages, api, apiKey, confirmAction, download, duration, errorBox, h, progressBar,
         statusBadge, time } from "./core.js";
import { formatNumber, legend, lineChart } from "./charts.js";
import { samplesView } from "./samples.js";
import { follow } from "./sse.js";

const CURVES = { loss: ["loss", "eval_loss"], lr: ["learning_rate"],
                 preference: ["rewards/margins", "rewards/accuracies", "eval_rewards/margins", "eval_rewards/accuracies"] };
const CHECKPOINT_METRICS = /loss|rouge_l|bleu|exact_match|rewards\/accuracies/;  // shown in the checkpoints table
const CONTROLS = {
  pause: { when: ["queued", "running"], text: "Pause job #ID? A running job writes a checkpoint of its current step and stops; resume continues from it." },
  resume: { when: ["paused", "cancelled", "failed"], text: "Resume job #ID from its latest checkpoint?" },
  cancel: { when: ["queued", "running", "pausing", "paused"], text: "Cancel job #ID? A running job writes a checkpoint of its current step and stops." },
};

export async function renderJob(main, jobId, signal) {
  const state = { job: null, series: new Map(), events: [], checkpoints: [], logY: false, followed: null };
  const parts = {
    title: h("h1"), status: h("span"), actions: h("div", { class: "actions" }), notice: h("div"),
    progress: h("div", { class: "card", id: "progress" }),
    charts: { loss: h("div", { id: "loss-chart" }), lr: h("div", { id: "lr-chart" }),
              preference: h("div", { id: "preference-chart" }) },
    legends: { loss: h("div"), lr: h("div"), preference: h("div") },
    preferenceFigure: h("figure", { hidden: true }),
    events: h("tbody"), attempts: h("tbody"), checkpoints: h("tbody"), result: h("div"), spec: h("pre", { id: "spec" }),
    samples: h("div"),
  };
  const samples = samplesView(jobId, signal);
  const logToggle = h("input", { type: "checkbox", id: "log-scale", onchange: () => { state.logY = logToggle.checked; drawCharts(); } });
  main.replaceChildren(
    h("div", { class: "page-head" }, h("div", {}, parts.title, parts.status), parts.actions),
    parts.notice, parts.progress,
    h("div", { class: "card" },
      h("div", { class: "card-head" }, h("h2", {}, "Curves"), h("label", { class: "toggle" }, logToggle, " log scale")),
      h("div", { class: "charts" },
        h("figure", {}, h("figcaption", {}, "loss / eval_loss"), parts.charts.loss, parts.legends.loss),
        h("figure", {}, h("figcaption", {}, "learning_rate"), parts.charts.lr, parts.legends.lr),
        parts.preferenceFigure)),
    parts.samples,
    h("div", { class: "columns" },
      h("div", { class: "card" }, h("h2", {}, "Checkpoints"), parts.result,
        h("table", { id: "checkpoints" }, h("thead", {}, h("tr", {}, ["Step", "Saved", "Metrics", ""].map((t) => h("th", {}, t)))), parts.checkpoints)),
      h("div", { class: "card" }, h("h2", {}, "Attempts"),
        h("table", { id: "attempts" }, h("thead", {}, h("tr", {}, ["#", "Status", "Reason", "Worker", "Started", "Finished", "Error"].map((t) => h("th", {}, t)))), parts.attempts))),
    h("div", { class: "card" }, h("h2", {}, "Events"),
      h("div", { class: "scroll" }, h("table", { id: "events" }, h("thead", {}, h("tr", {}, ["Time", "Type", "Message"].map((t) => h("th", {}, t)))), parts.events))),
    h("details", { class: "card" }, h("summary", {}, "Spec"), parts.spec));

  function drawCharts() {
    for (const [key, names] of Object.entries(CURVES)) {
      const series = names.filter((name) => state.series.has(name)).map((name) => ({
        name, points: [...state.series.get(name).entries()].sort((a, b) => a[0] - b[0]),
      }));
      if (key === "preference" && !series.length) continue;  // supervised jobs have none
      lineChart(parts.charts[key], series, { logY: state.logY && key !== "preference" });
      parts.legends[key].replaceChildren(legend(series));
    }
  }

  function addPoint(point) {
    if (!state.series.has(point.name)) state.series.set(point.name, new Map());
    state.series.get(point.name).set(point.step, point.value);
  }

  function drawJob() {
    const job = state.job;
    parts.title.textContent = `Job #${job.id}${job.name ? ` · ${job.name}` : ""}`;
    parts.status.replaceChildren(statusBadge(job.status), h("span", { class: "muted" }, ` ${job.spec.base_model} · ${job.spec.method}${job.spec.objective && job.spec.objective !== "sft" ? ` · ${job.spec.objective}` : ""}`));
    parts.actions.replaceChildren(...Object.entries(CONTROLS).map(([action, control]) =>
      h("button", { id: `${action}-button`, class: action === "cancel" ? "danger" : "secondary",
                    disabled: !control.when.includes(job.status), onclick: () => act(action, control) },
        action[0].toUpperCase() + action.slice(1))));
    drawProgress();
    parts.attempts.replaceChildren(...job.attempts.map((run) => h("tr", {},
      h("td", {}, run.attempt), h("td", {}, statusBadge(run.status)), h("td", {}, run.reason), h("td", { class: "muted" }, run.worker || "–"),
      h("td", {}, time(run.started_at)), h("td", {}, time(run.finished_at)),
      h("td", {}, run.error ? `${run.error.code}: ${run.error.message || ""}` : ""))));
    parts.result.replaceChildren(job.final_model_download
      ? h("p", {}, h("button", { class: "secondary", id: "download-final", onclick: () => download(job.final_model_download, `job-${job.id}-final.tar`) }, "Download final model"))
      : "");
    if (job.error) parts.notice.replaceChildren(h("div", { class: "error" }, `${job.error.code}: ${job.error.message}`));
    else parts.notice.replaceChildren();
    parts.spec.textContent = JSON.stringify(job.spec, null, 2);
  }

  function drawProgress() {
    const p = state.job.progress || {};
    const stat = (label, value) => h("div", { class: "stat" }, h("span", { class: "muted" }, label), h("strong", {}, value));
    const training = ["running", "cancelling", "pausing"].includes(state.job.status);
    const phase = !training ? state.job.status
      : p.phase ? `${p.phase.replace(/_/g, " ")}${p.phase_progress != null ? ` ${Math.round(p.phase_progress * 100)}%` : ""}` : "starting";
    parts.progress.replaceChildren(
      h("div", { class: "card-head" }, h("h2", {}, "Progress"), h("span", { class: "muted", id: "phase" }, phase)),
      progressBar(p),
      h("div", { class: "stats" },
        stat("step", p.max_steps ? `${p.step ?? 0} / ${p.max_steps}` : "–"),
        stat("epoch", p.epoch != null ? formatNumber(p.epoch) : "–"),
        stat("ETA", training ? duration(p.eta_seconds) : "–"),
        stat("steps/s", formatNumber(p.steps_per_second)),
        stat("tokens/s", formatNumber(p.tokens_per_second)),
        stat("loss", formatNumber(p.loss)),
        stat("padding efficiency", p.padding_efficiency != null ? `${Math.round(p.padding_efficiency * 100)}%` : "–")));
  }

  function drawEvents() {
    parts.events.replaceChildren(...state.events.slice().reverse().map((event) => h("tr", {},
      h("td", { class: "muted nowrap" }, time(event.created_at)), h("td", {}, h("code", {}, event.type)), h("td", {}, event.message))));
  }

  function drawCheckpoints() {
    parts.checkpoints.replaceChildren(...state.checkpoints.map((c) => h("tr", { "data-step": c.step },
      h("td", {}, c.step, c.is_best ? h("span", { class: "badge best" }, "best") : ""),
      h("td", { class: "muted" }, time(c.time)),
      h("td", { class: "small" }, Object.entries(c.metrics || {}).filter(([k]) => CHECKPOINT_METRICS.test(k)).map(([k, v]) => `${k} ${formatNumber(v)}`).join(", ")),
      h("td", {}, c.download
        ? h("button", { class: "link", onclick: () => download(c.download, `job-${jobId}-checkpoint-${c.step}.tar`) }, "Download")
        : h("span", { class: "muted" }, "deleted")))));
    if (!state.checkpoints.length) parts.checkpoints.replaceChildren(h("tr", {}, h("td", { colspan: 4, class: "muted" }, "None yet")));
  }

  async function act(action, control) {
    if (!(await confirmAction(control.text.replace("ID", jobId), action[0].toUpperCase() + action.slice(1)))) return;
    try {
      state.job = await api(`/jobs/${jobId}/${action}`, { method: "POST" });
      drawJob();
      if (action === "resume") await start();  // a new attempt: follow the stream again
    } catch (error) {
      parts.notice.replaceChildren(errorBox(error));
    }
  }

  async function refreshJob() {
    state.job = await api(`/jobs/${jobId}`, { signal });
    drawJob();
  }

  async function refreshCheckpoints() {
    state.checkpoints = await api(`/jobs/${jobId}/checkpoints`, { signal });
    drawCheckpoints();
  }

  function onEvent(event) {
    const data = event.data;
    if (event.type === "metrics") { data.points.forEach(addPoint); drawCharts(); }
    else if (event.type === "progress") { state.job.progress = data; drawProgress(); }
    else if (event.type === "checkpoint") { refreshCheckpoints().catch(() => {}); addEvent("checkpoint.saved", data.message); }
    else if (event.type === "status") { addEvent(`job.${data.status}`, data.message, data.at); refreshJob().catch(() => {}); }
    else if (event.type === "event") {
      addEvent(data.type, data.message, data.at);
      if (data.type === "samples.generated") samples.refresh().catch(() => {});
    }
  }

  function addEvent(type, message, at = new Date().toISOString()) {
    if (type === "metrics.logged") return;
    state.events.push({ type, message, created_at: at });
    drawEvents();
  }

  // Reads everything up to the job's stream position, then follows the stream after it.
  async function start() {
    if (state.followed) state.followed.abort();
    const followed = (state.followed = new AbortController());
    signal.addEventListener("abort", () => followed.abort());
    state.job = await api(`/jobs/${jobId}`, { signal });
    const names = Object.values(CURVES).flat().map((n) => `name=${n}`).join("&");
    const [metrics, events, checkpoints] = await Promise.all([
      api(`/jobs/${jobId}/metrics?${names}&max_points=1000`, { signal }),
      allPages(`/jobs/${jobId}/events?limit=500`, { signal }),
      api(`/jobs/${jobId}/checkpoints`, { signal }),
    ]);
    state.series.clear();
    metrics.items.forEach(addPoint);
    // Preference jobs (objective dpo or orpo): reward margins and accuracies of chosen over rejected.
    parts.preferenceFigure.hidden = (state.job.spec.objective || "sft") === "sft";
    parts.preferenceFigure.replaceChildren(h("figcaption", {}, "rewards: margins / accuracies"),
                                           parts.charts.preference, parts.legends.preference);
    state.events = events.filter((event) => event.stream_id <= state.job.stream_position);  // the stream sends the rest
    state.checkpoints = checkpoints;
    drawJob(); drawCharts(); drawEvents(); drawCheckpoints();
    const evaluation = state.job.spec.evaluation || {};
    if (evaluation.sample_prompts?.length || evaluation.samples_from_validation) {
      parts.samples.replaceChildren(samples.node);
      await samples.refresh();
    }
    follow(`/jobs/${jobId}/stream`, { key: apiKey, lastEventId: state.job.stream_position, signal: followed.signal, onEvent });
  }

  try {
    await start();
  } catch (error) {
    if (error.status === 404) main.replaceChildren(errorBox(error), h("a", { href: "#/jobs" }, "All jobs"));
    else throw error;
  }
}
