// The dashboard: sign-in, then hash routes (#/jobs, #/jobs/ID, #/compare, #/sweeps, #/sweeps/ID,
// #/datasets, #/new, #/playground).
import { api, apiKey, errorBox, forgetApiKey, h, setApiKey } from "./core.js";
import { renderCompare } from "./compare.js";
import { renderDatasets } from "./datasets.js";
import { renderJob } from "./job.js";
import { renderJobs } from "./jobs.js";
import { renderNewJob } from "./newjob.js";
import { renderPlayground } from "./playground.js";
import { renderSweep, renderSweeps } from "./sweeps.js";

const main = document.getElementById("main");
let leaving = null;  // aborts the shown page's streams and timers

function route() {
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean);
  const params = new URLSearchParams(query);
  if (parts[0] === "jobs" && parts[1]) return ["jobs", (main, signal) => renderJob(main, Number(parts[1]), signal)];
  if (parts[0] === "sweeps" && parts[1]) return ["sweeps", (main, signal) => renderSweep(main, Number(parts[1]), signal)];
  if (parts[0] === "sweeps") return ["sweeps", (main, signal) => renderSweeps(main, signal)];
  if (parts[0] === "compare") return ["compare", (main, signal) => renderCompare(main, params, signal)];
  if (parts[0] === "datasets") return ["datasets", (main, signal) => renderDatasets(main, signal)];
  if (parts[0] === "new") return ["new", (main, signal) => renderNewJob(main, signal)];
  if (parts[0] === "playground") return ["playground", (main, signal) => renderPlayground(main, params, signal)];
  return ["jobs", (main, signal) => renderJobs(main, params, signal)];
}

function show() {
  if (leaving) leaving.abort();
  leaving = new AbortController();
  const signedIn = Boolean(apiKey());
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("sign-out").hidden = !signedIn;
  main.replaceChildren();
  if (!signedIn) return renderSignIn();
  const [page, render] = route();
  for (const link of document.querySelectorAll("#nav a")) link.classList.toggle("current", link.dataset.page === page);
  render(main, leaving.signal).catch((error) => {
    if (!leaving.signal.aborted && error.name !== "AbortError") main.replaceChildren(errorBox(error));
  });
}

function renderSignIn() {
  const input = h("input", { type: "password", id: "api-key", name: "api-key", autocomplete: "off",
                             placeholder: "td_…", required: true, "aria-label": "API key" });
  const problem = h("div", { class: "error", hidden: true, role: "alert" });
  const form = h("form", { class: "card sign-in", id: "sign-in", onsubmit: async (event) => {
    event.preventDefault();
    setApiKey(input.value.trim());
    try {
      await api("/jobs?limit=1");
      show();
    } catch (error) {
      forgetApiKey();
      problem.textContent = error.status === 401 ? "That key is not valid (or was revoked)." : String(error.message);
      problem.hidden = false;
    }
  } },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "Paste an API key (", h("code", {}, "traindock keys create --tenant NAME"),
      ", or the one ", h("code", {}, "traindock up"), " saved in ", h("code", {}, "<data dir>/api-key"),
      "). It stays in this tab's session storage and is sent only as a header."),
    input, problem, h("button", { type: "submit" }, "Sign in"));
  main.replaceChildren(form);
  input.focus();
}

document.getElementById("sign-out").addEventListener("click", () => { forgetApiKey(); show(); });
window.addEventListener("traindock:signed-out", () => { forgetApiKey(); show(); });
window.addEventListener("hashchange", show);
show();
