// Playground: two or three models side by side (base, fine-tuned, or a fine-tuned job's
// checkpoint), one chat or one prompt sent to all of them, each answer streamed into its column
// from /v1/chat/completions or /v1/completions. The columns' models live in the address
// (#/playground?models=a,b), so a comparison can be bookmarked.
import { api, apiKey, h } from "./core.js";
import { sseEvents } from "./sse.js";

const COLUMNS = [2, 3];

export async function renderPlayground(main, params, signal) {
  const models = await modelGroups(signal);
  const names = models.flatMap((group) => group.options.map((option) => option.id));
  const wanted = (params.get("models") || "").split(",").filter(Boolean);
  let chosen = wanted.length ? wanted.slice(0, 3) : [names[0], names[0]];
  while (chosen.length < 2) chosen.push(chosen[0]);

  const mode = h("select", { id: "pg-mode", "aria-label": "Mode", onchange: () => { clear(); setMode(); } },
    h("option", { value: "chat" }, "chat"), h("option", { value: "prompt" }, "single prompt"));
  const count = h("select", { id: "pg-columns", "aria-label": "Columns", onchange: () => {
    const n = Number(count.value);
    if (running) running.abort();
    chosen = [...chosen.slice(0, n), ...Array(Math.max(0, n - chosen.length)).fill(chosen[0])];
    build();
    remember();
  } }, COLUMNS.map((n) => h("option", { value: n, selected: n === chosen.length }, `${n} columns`)));
  const temperature = h("input", { type: "number", id: "pg-temperature", min: 0, max: 2, step: 0.1, value: 0.7 });
  const maxTokens = h("input", { type: "number", id: "pg-max-tokens", min: 1, step: 1, value: 128 });
  const input = h("textarea", { id: "pg-input", rows: 3, placeholder: "Say something… (Ctrl+Enter sends)",
                                "aria-label": "Message", onkeydown: (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); send(); }
  } });
  const sendButton = h("button", { type: "button", id: "pg-send", onclick: () => send() }, "Send");
  const stopButton = h("button", { type: "button", id: "pg-stop", class: "secondary", disabled: true,
                                   onclick: () => running && running.abort() }, "Stop");
  const clearButton = h("button", { type: "button", id: "pg-clear", class: "secondary", onclick: () => clear() }, "Clear");
  const grid = h("div", { class: "playground", id: "pg-grid" });
  let columns = [];
  let running = null;  // the AbortController of the answers being streamed

  main.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Playground"),
      h("div", { class: "pg-settings" }, mode, count,
        h("label", { class: "toggle" }, "temperature ", temperature),
        h("label", { class: "toggle" }, "max tokens ", maxTokens))),
    names.length ? grid : h("p", { class: "card muted" }, "No models: put one in a model root, or fine-tune one."),
    h("div", { class: "card pg-compose" }, input,
      h("div", { class: "actions" }, clearButton, stopButton, sendButton)));
  build();
  setMode();
  signal.addEventListener("abort", () => running && running.abort());

  function build() {
    columns = chosen.map((model, index) => column(models, model, index, (value) => { chosen[index] = value; remember(); }));
    grid.classList.toggle("three", chosen.length === 3);
    grid.replaceChildren(...columns.map((c) => c.node));
  }

  function remember() {  // the address keeps the models; no hashchange, so nothing re-renders
    history.replaceState(null, "", `#/playground?models=${chosen.map(encodeURIComponent).join(",")}`);
  }

  function setMode() {
    input.placeholder = mode.value === "chat" ? "Say something… (Ctrl+Enter sends)" : "A prompt to complete… (Ctrl+Enter sends)";
  }

  function clear() {
    if (running) running.abort();
    for (const c of columns) c.reset();
  }

  async function send() {
    const text = input.value.trim();
    if (!text || running || !names.length) return;
    const controller = new AbortController();
    signal.addEventListener("abort", () => controller.abort(), { once: true });
    running = controller;
    sendButton.disabled = true;
    stopButton.disabled = false;
    const number = (field) => (field.value === "" ? undefined : Number(field.value));  // empty: the server's default
    const settings = { temperature: number(temperature), max_tokens: number(maxTokens) };
    const chat = mode.value === "chat";
    if (chat) input.value = "";
    try {
      const answered = await Promise.all(columns.map((c) => c.ask(text, chat, settings, controller.signal)));
      if (chat && !answered.some(Boolean) && !input.value) input.value = text;  // nothing took it: try again
    } finally {
      running = null;
      sendButton.disabled = false;
      stopButton.disabled = true;
      if (!signal.aborted) input.focus();
    }
  }
}

// The models a column can pick: base models, then each fine-tuned model with its checkpoints.
async function modelGroups(signal) {
  const listed = (await api("/v1/models", { signal })).data;
  const groups = [{ label: "Base models", options: listed.filter((m) => m.owned_by === "traindock").map((m) => ({ id: m.id, label: m.id })) }];
  const tuned = listed.filter((m) => m.owned_by !== "traindock");
  const checkpoints = await Promise.all(tuned.map(async (m) => {
    try {
      const job = m.id.split(":").pop();
      return (await api(`/v1/fine_tuning/jobs/${encodeURIComponent(job)}/checkpoints?limit=100`, { signal })).data;
    } catch (error) {
      if (signal.aborted) throw error;
      return [];  // the model is still usable without its checkpoints
    }
  }));
  tuned.forEach((m, i) => groups.push({ label: m.id, options: [{ id: m.id, label: `${m.id} (final)` },
    ...checkpoints[i].map((c) => ({ id: c.fine_tuned_model_checkpoint, label: `checkpoint step ${c.step_number}` }))] }));
  return groups.filter((group) => group.options.length);
}

function column(groups, model, index, onPick) {
  const select = h("select", { id: `pg-model-${index}`, "aria-label": `Model ${index + 1}`, onchange: () => { onPick(select.value); reset(); } },
    groups.map((group) => h("optgroup", { label: group.label },
      group.options.map((option) => h("option", { value: option.id, selected: option.id === model }, option.label)))));
  if (model && select.value !== model) {  // a model named in the address that is not listed (yet)
    select.prepend(h("option", { value: model, selected: true }, model));
    select.value = model;
  }
  const transcript = h("div", { class: "pg-transcript" });
  const node = h("div", { class: "card pg-column", "data-column": index, "data-state": "idle" }, select, transcript);
  let messages = [];
  let generation = 0;  // a reset while an answer streams makes that answer stale

  function reset() {
    generation++;
    messages = [];
    transcript.replaceChildren();
    node.dataset.state = "idle";
  }

  async function ask(text, chat, settings, signal) {
    if (!chat) transcript.replaceChildren();
    const turn = chat ? h("div", { class: "msg user" }, text) : h("div", { class: "msg prompt" }, text);
    const answer = h("div", { class: "msg assistant" });
    transcript.append(turn, answer);
    node.dataset.state = "streaming";
    const asked = chat ? [...messages, { role: "user", content: text }] : null;
    const mine = generation;
    const body = { model: select.value, stream: true, ...settings, ...(chat ? { messages: asked } : { prompt: text }) };
    try {
      await stream(chat ? "/v1/chat/completions" : "/v1/completions", body, signal, (piece) => {
        answer.textContent += piece;
        transcript.scrollTop = transcript.scrollHeight;
      });
      if (mine !== generation) return true;
      if (chat) messages = [...asked, { role: "assistant", content: answer.textContent }];
      node.dataset.state = "done";
      return true;
    } catch (error) {
      if (mine !== generation) return true;
      if (signal.aborted) {
        if (chat && answer.textContent) messages = [...asked, { role: "assistant", content: answer.textContent }];
        answer.append(h("span", { class: "muted small" }, " (stopped)"));
        node.dataset.state = "done";
        return true;
      }
      turn.classList.add("failed");  // not part of the conversation: the next message goes without it
      answer.replaceWith(h("div", { class: "error", role: "alert" }, error.message));
      node.dataset.state = "error";
      return false;
    }
  }

  return { node, ask, reset };
}

// POSTs `body` and calls onText with each piece of the streamed answer (OpenAI's chunks as
// Server-Sent Events, ending with [DONE]). A refusal throws with the error envelope's message.
async function stream(path, body, signal, onText) {
  const response = await fetch(path, {
    method: "POST", signal, cache: "no-store", body: JSON.stringify(body),
    headers: { Authorization: `Bearer ${apiKey()}`, "Content-Type": "application/json", Accept: "text/event-stream" },
  });
  if (!response.ok) {
    if (response.status === 401) window.dispatchEvent(new Event("traindock:signed-out"));
    throw new Error(await refusal(response));
  }
  for await (const { data: chunk } of sseEvents(response)) {
    if (chunk === "[DONE]") return;
    if (chunk.error) throw new Error(chunk.error.message || "the answer failed");
    const choice = (chunk.choices || [])[0];
    const piece = choice ? (choice.delta ? choice.delta.content : choice.text) : null;
    if (piece) onText(piece);
  }
}

async function refusal(response) {
  const text = await response.text();
  try {
    const data = JSON.parse(text);
    if (data.error && data.error.message) return data.error.message;
    if (typeof data.detail === "string") return data.detail;
  } catch { /* not JSON */ }
  return `${response.status} ${response.statusText || "error"}${text ? `: ${text.slice(0, 200)}` : ""}`;
}
