// A job's sample generations (the spec's evaluation section): pick a prompt, see what the model
// generated for it at each evaluation step, beside the validation row's reference answer.
import { api, h } from "./core.js";

const promptText = (prompt) => (typeof prompt === "string" ? prompt
  : prompt.map((m) => `${m.role}: ${m.content}`).join("\n"));

// {node, refresh}: refresh() reads GET /jobs/{id}/samples again (after a samples.generated event).
export function samplesView(jobId, signal) {
  const picker = h("select", { id: "sample-prompt", onchange: () => draw() });
  const prompt = h("pre", { id: "sample-prompt-text", class: "small" });
  const reference = h("pre", { id: "sample-reference", class: "small" });
  const outputs = h("tbody", { id: "sample-outputs" });
  const node = h("div", { class: "card", id: "samples" },
    h("div", { class: "card-head" }, h("h2", {}, "Samples"), h("label", {}, "prompt ", picker)),
    h("div", { class: "columns" },
      h("div", {}, h("h3", {}, "Prompt"), prompt, h("h3", {}, "Reference"), reference),
      h("div", {}, h("table", { class: "rows", id: "sample-table" },
        h("thead", {}, h("tr", {}, h("th", {}, "Step"), h("th", {}, "Output"))), outputs))));
  let samples = [];

  function draw() {
    const index = Number(picker.value);
    const chosen = samples.filter((s) => s.prompt_index === index);
    const last = chosen[chosen.length - 1];
    prompt.textContent = last ? promptText(last.prompt) : "";
    reference.textContent = last?.reference ?? "– (a sample prompt has none)";
    outputs.replaceChildren(...chosen.map((s) => h("tr", { "data-step": s.step },
      h("td", {}, s.step), h("td", {}, h("code", {}, s.output || "(empty)")))));
    if (!chosen.length) outputs.replaceChildren(h("tr", {}, h("td", { colspan: 2, class: "muted" }, "None yet: samples come at each evaluation and at the end")));
  }

  async function refresh() {
    samples = await api(`/jobs/${jobId}/samples`, { signal });
    const prompts = new Map();
    for (const s of samples) prompts.set(s.prompt_index, s);
    const chosen = picker.value;
    picker.replaceChildren(...[...prompts.values()].sort((a, b) => a.prompt_index - b.prompt_index).map((s) =>
      h("option", { value: s.prompt_index }, `#${s.prompt_index} ${s.source}: ${promptText(s.prompt).slice(0, 60)}`)));
    if (chosen !== "" && prompts.has(Number(chosen))) picker.value = chosen;
    draw();
  }

  return { node, refresh };
}
