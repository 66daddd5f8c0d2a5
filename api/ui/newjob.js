// New job: a form built from GET /schema/job-spec (every field with its description and
// default), checked as you type by POST /jobs/validate (errors beside their fields, the tuning
// advice, the estimates), submitted with POST /jobs.
import { api, bytes, errorBox, h } from "./core.js";
import { formatNumber } from "./charts.js";

const SECTIONS = { data: "Data", lora: "LoRA", training: "Training", resources: "Resources", resume_from_checkpoint: "Resume from a checkpoint" };

export async function renderNewJob(main, signal) {
  const [schema, datasets, models] = await Promise.all([
    api("/schema/job-spec", { signal }), api("/datasets?limit=200", { signal }), api("/models", { signal }),
  ]);
  const fields = [];  // {path, kind, input, error}
  const report = h("div", { id: "validation", "aria-live": "polite" });
  const submit = h("button", { type: "submit", id: "submit-job", disabled: true }, "Submit job");
  const submitError = h("div");
  const specPreview = h("pre", { id: "spec-preview" });

  const basics = Object.entries(schema.properties).filter(([, p]) => !objectSchema(schema, p));
  const sections = Object.entries(schema.properties).filter(([, p]) => objectSchema(schema, p));
  const form = h("form", { id: "job-form", novalidate: true, oninput: changed, onchange: changed, onsubmit: send },
    h("fieldset", { class: "card" }, h("legend", {}, "Job"),
      h("div", { class: "fields" }, basics.map(([name, property]) =>
        field(schema, [name], property, (schema.required || []).includes(name), { datasets, models })))),
    sections.map(([name, property]) => h("details", { class: "card section", open: name === "training" || name === "data" },
      h("summary", {}, SECTIONS[name] || name, h("span", { class: "muted small" }, ` ${property.description || ""}`)),
      h("div", { class: "fields" }, Object.entries(objectSchema(schema, property).properties).map(([key, inner]) =>
        field(schema, [name, key], inner, false, { datasets, models }))))));
  main.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "New job")),
    h("div", { class: "new-job" }, form,
      h("aside", { class: "card side" }, h("h2", {}, "Check"), report, submit, submitError,
        h("details", {}, h("summary", {}, "Spec to send"), specPreview))));
  submit.addEventListener("click", send);

  function field(root, path, property, required, context) {
    const schemaOf = resolve(root, property);
    const id = `f-${path.join("-")}`;
    const name = path[path.length - 1];
    let input, kind = schemaOf.kind;
    if (name === "dataset_id" || name === "validation_dataset_id") {
      kind = "integer";
      input = h("select", { id, name: path.join(".") },
        h("option", { value: "" }, required ? "choose a dataset" : "none"),
        context.datasets.items.map((d) => h("option", { value: d.id }, `#${d.id} ${d.filename} (${d.rows} ${d.format} rows)`)));
      if (required && context.datasets.items.length) input.value = String(context.datasets.items[0].id);
    } else if (schemaOf.enum) {
      input = h("select", { id, name: path.join(".") }, h("option", { value: "" }, `default (${property.default ?? "none"})`),
        schemaOf.enum.map((v) => h("option", { value: v }, v)));
    } else if (kind === "boolean") {
      input = h("select", { id, name: path.join(".") }, h("option", { value: "" }, `default (${property.default ?? "none"})`),
        h("option", { value: "true" }, "true"), h("option", { value: "false" }, "false"));
    } else {
      input = h("input", { id, name: path.join("."), type: "text", autocomplete: "off", spellcheck: "false",
                           inputmode: kind === "integer" || kind === "number" ? "decimal" : null,
                           placeholder: property.default !== undefined && property.default !== null ? JSON.stringify(property.default) : "",
                           list: name === "base_model" ? "base-models" : null });
      if (name === "base_model" && context.models.base.length) input.value = context.models.base[0].name;
    }
    const error = h("div", { class: "field-error", "data-for": path.join(".") });
    fields.push({ path, kind, input, error });
    const models = name === "base_model"
      ? h("datalist", { id: "base-models" }, context.models.base.map((m) => h("option", { value: m.name })))
      : null;
    const range = [schemaOf.minimum !== undefined ? `≥ ${schemaOf.minimum}` : "", schemaOf.exclusiveMinimum !== undefined ? `> ${schemaOf.exclusiveMinimum}` : "",
                   schemaOf.maximum !== undefined && schemaOf.maximum < 1e12 ? `≤ ${schemaOf.maximum}` : ""].filter(Boolean).join(", ");
    return h("div", { class: "field" },
      h("label", { for: id }, h("code", {}, name), required ? h("span", { class: "required" }, " required") : "",
        h("span", { class: "muted small" }, ` ${kind}${range ? `, ${range}` : ""}`)),
      input, models, h("div", { class: "help" }, property.description || schemaOf.description || ""), error);
  }

  function spec() {
    const built = {};
    for (const { path, kind, input } of fields) {
      const text = input.value.trim();
      if (text === "") continue;
      let value = text;
      if (kind === "boolean") value = text === "true";
      else if (kind === "integer" || kind === "number") value = Number.isNaN(Number(text)) ? text : Number(text);
      else if (kind === "any" || kind === "array") { try { value = JSON.parse(text); } catch { value = text; } }
      let target = built;
      for (const part of path.slice(0, -1)) target = target[part] = target[part] || {};
      target[path[path.length - 1]] = value;
    }
    return built;
  }

  let timer = null, latest = 0;
  function changed() {
    clearTimeout(timer);
    timer = setTimeout(check, 350);
  }

  async function check() {
    const body = spec();
    specPreview.textContent = JSON.stringify(body, null, 2);
    const asked = ++latest;
    let answer;
    try {
      answer = await api("/jobs/validate", { method: "POST", body, signal });
    } catch (error) {
      if (asked === latest && error.name !== "AbortError") report.replaceChildren(errorBox(error));
      return;
    }
    if (asked !== latest) return;  // an older answer arriving late
    showReport(answer);
  }

  function showReport(answer) {
    for (const f of fields) { f.error.textContent = ""; f.input.classList.remove("invalid"); }
    const unplaced = [];
    for (const problem of answer.errors) {
      const loc = (problem.loc || []).filter((p) => p !== "body").join(".");
      const f = fields.find((candidate) => loc === candidate.path.join(".") || loc.startsWith(`${candidate.path.join(".")}.`));
      if (f) { f.error.textContent = problem.msg; f.input.classList.add("invalid"); } else unplaced.push(`${loc || "spec"}: ${problem.msg}`);
    }
    submit.disabled = !answer.valid;
    report.replaceChildren(
      h("div", { class: answer.valid ? "ok" : "error", id: "validity" },
        answer.valid ? "Valid: ready to submit." : `${answer.errors.length} problem${answer.errors.length === 1 ? "" : "s"} to fix.`,
        unplaced.length ? h("ul", {}, unplaced.map((line) => h("li", {}, line))) : ""),
      answer.warnings.length ? h("div", { id: "advice" }, h("h3", {}, "Advice"),
        h("ul", { class: "advice" }, answer.warnings.map((w) => h("li", {}, h("code", {}, w.field), ` ${w.msg}`)))) : "",
      answer.estimates ? estimates(answer.estimates) : "");
  }

  async function send(event) {
    event.preventDefault();
    if (submit.disabled) return;
    submit.disabled = true;
    try {
      const job = await api("/jobs", { method: "POST", body: spec() });
      location.hash = `#/jobs/${job.id}`;
    } catch (error) {
      submitError.replaceChildren(errorBox(error));
      submit.disabled = false;
    }
  }

  check();
}

function estimates(e) {
  const rows = [["train rows", e.train_rows], ["eval rows", e.eval_rows], ["effective batch size", e.effective_batch_size],
                ["steps per epoch", e.steps_per_epoch], ["total steps", e.total_steps], ["epochs", e.epochs != null ? formatNumber(e.epochs) : null],
                ["warm-up steps", e.warmup_steps], ["evaluations", e.evaluations], ["checkpoints", e.checkpoints]]
    .filter(([, value]) => value !== undefined && value !== null);
  const memory = e.memory || {};
  const memoryRows = memory.bytes
    ? [["peak GPU memory", `${memory.peak_gib} GiB`], ...Object.entries(memory.bytes).filter(([k]) => k !== "total").map(([k, v]) => [k.replace(/_/g, " "), bytes(v)]),
       ["parameters", `${formatNumber(memory.parameters.total)} (${formatNumber(memory.parameters.trainable)} trainable)`]]
    : [["peak GPU memory", memory.unavailable || "–"]];
  return h("div", { id: "estimates" }, h("h3", {}, "Estimates"),
    (e.errors || []).map((problem) => h("div", { class: "error" }, problem.msg)),
    h("table", { class: "kv" }, [...rows, ...memoryRows].map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, String(v))))),
    memory.suggestion ? h("p", { class: "warn" }, typeof memory.suggestion === "string" ? memory.suggestion : JSON.stringify(memory.suggestion)) : "",
    e.packing ? h("p", { class: "muted small" }, e.packing) : "");
}

// A property's schema with $ref and "or null" unwrapped; kind "any" for a real union.
function resolve(root, property) {
  let schema = property;
  if (schema.$ref) schema = root.$defs[schema.$ref.split("/").pop()];
  if (schema.anyOf) {
    const options = schema.anyOf.filter((option) => option.type !== "null");
    if (options.length !== 1) return { ...schema, kind: "any" };
    schema = options[0].$ref ? root.$defs[options[0].$ref.split("/").pop()] : options[0];
  }
  return { ...schema, kind: schema.type || "any" };
}

function objectSchema(root, property) {
  const schema = resolve(root, property);
  return schema.kind === "object" && schema.properties ? schema : null;
}
