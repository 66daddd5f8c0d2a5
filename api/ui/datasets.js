// Datasets: upload (a refused file shows each line's error), the list, a preview of the first
// rows, and delete.
import { ApiError, api, bytes, confirmAction, errorBox, h, time } from "./core.js";

export async function renderDatasets(main, signal) {
  const file = h("input", { type: "file", id: "dataset-file", accept: ".jsonl,.json,application/json", required: true });
  const outcome = h("div", { id: "upload-outcome" });
  const body = h("tbody");
  const preview = h("div", { id: "preview" });
  const form = h("form", { class: "upload", id: "upload-form", onsubmit: async (event) => {
    event.preventDefault();
    if (!file.files.length) return;
    const data = new FormData();
    data.append("file", file.files[0]);
    outcome.replaceChildren(h("p", { class: "muted" }, "Uploading and checking every row…"));
    try {
      const dataset = await api("/datasets", { method: "POST", form: data });
      outcome.replaceChildren(h("div", { class: "ok" }, `Stored dataset #${dataset.id}: ${dataset.rows} ${dataset.format} rows.`));
      form.reset();
      await load();
      await showPreview(dataset);
    } catch (error) {
      outcome.replaceChildren(uploadErrors(error));
    }
  } }, file, h("button", { type: "submit" }, "Upload"));
  main.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Datasets")),
    h("div", { class: "card" }, h("h2", {}, "Upload"),
      h("p", { class: "muted" }, "JSONL (one row per line) or a JSON array of alpaca, chat, ShareGPT or text rows, or preference pairs (prompt, chosen, rejected; or OpenAI's DPO rows) for DPO and ORPO jobs. Every row is checked; a bad row refuses the whole file."),
      form, outcome),
    h("div", { class: "card" }, h("table", { id: "datasets" },
      h("thead", {}, h("tr", {}, ["Dataset", "Format", "Rows", "Size", "Uploaded", ""].map((t) => h("th", {}, t)))), body)),
    preview);

  async function load() {
    const datasets = (await api("/datasets?limit=200", { signal })).items;
    body.replaceChildren(...datasets.map((d) => h("tr", { "data-dataset": d.id },
      h("td", {}, `#${d.id} `, h("span", {}, d.filename)), h("td", {}, d.format), h("td", { class: "num" }, d.rows),
      h("td", { class: "num" }, bytes(d.bytes)), h("td", { class: "muted" }, time(d.created_at)),
      h("td", { class: "actions" },
        h("button", { class: "link", onclick: () => showPreview(d) }, "Preview"),
        h("button", { class: "link danger-text", onclick: () => remove(d) }, "Delete")))));
    if (!datasets.length) body.replaceChildren(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No datasets yet.")));
  }

  async function showPreview(dataset) {
    const { rows, total } = await api(`/datasets/${dataset.id}/rows?limit=5`, { signal });
    preview.replaceChildren(h("div", { class: "card" },
      h("h2", {}, `#${dataset.id} ${dataset.filename}: the first ${rows.length} of ${total} rows`),
      h("table", { class: "rows" }, rows.map((row, index) => h("tr", { class: "row-preview" },
        h("td", { class: "muted num" }, index + 1), h("td", {}, h("code", {}, JSON.stringify(row))))))));
  }

  async function remove(dataset) {
    if (!(await confirmAction(`Delete dataset #${dataset.id} (${dataset.filename})? Finished jobs keep their spec.`, "Delete"))) return;
    try {
      await api(`/datasets/${dataset.id}`, { method: "DELETE" });
      preview.replaceChildren();
      outcome.replaceChildren(h("div", { class: "ok" }, `Deleted dataset #${dataset.id}.`));
    } catch (error) {
      outcome.replaceChildren(errorBox(error));
    }
    await load();
  }

  await load();
}

// A 422 names the line (or JSON array element) and why; anything else is one message.
function uploadErrors(error) {
  if (!(error instanceof ApiError) || !Array.isArray(error.detail)) return errorBox(error);
  return h("div", { class: "error", role: "alert" }, h("strong", {}, "The file was refused; nothing was stored."),
    h("ul", { class: "line-errors" }, error.detail.map((d) => h("li", { "data-line": d.line ?? "" }, d.msg))));
}
