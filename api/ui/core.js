// What every page uses: the API key, API calls, element building, formatting, confirmation.

const KEY = "traindock.apiKey";

export const apiKey = () => sessionStorage.getItem(KEY);
export const setApiKey = (key) => sessionStorage.setItem(KEY, key);
export const forgetApiKey = () => sessionStorage.removeItem(KEY);

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
  }
}

// fetch() with the bearer key; JSON in and out. A 401 signs out (the key was revoked).
export async function api(path, { method = "GET", body, form, signal, raw = false } = {}) {
  const headers = { Authorization: `Bearer ${apiKey()}` };
  let payload;
  if (form) payload = form;
  else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  const response = await fetch(path, { method, headers, body: payload, signal, cache: "no-store" });
  if (raw && response.ok) return response;
  const text = response.status === 204 ? "" : await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!response.ok) {
    if (response.status === 401 && path !== "/jobs?limit=1") window.dispatchEvent(new Event("traindock:signed-out"));
    throw new ApiError(response.status, data && data.detail !== undefined ? data.detail : data);
  }
  return data;
}

// Every page of a cursor-paginated list (capped: a page never loads without bound).
export async function allPages(path, { signal, cap = 2000 } = {}) {
  const items = [];
  let cursor = null;
  do {
    const joiner = path.includes("?") ? "&" : "?";
    const page = await api(`${path}${cursor ? `${joiner}cursor=${encodeURIComponent(cursor)}` : ""}`, { signal });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < cap);
  return items;
}

// A download that needs the key: fetched as a blob, then saved under the server's file name.
export async function download(path, fallbackName) {
  const response = await api(path, { raw: true });
  const disposition = response.headers.get("Content-Disposition") || "";
  const name = (disposition.match(/filename="([^"]+)"/) || [])[1] || fallbackName;
  const url = URL.createObjectURL(await response.blob());
  const link = h("a", { href: url, download: name });
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// h("div", {class: "x", onclick: f}, child, "text", ...): a DOM element.
export function h(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function statusBadge(status) {
  return h("span", { class: `badge status-${status}`, "data-status": status }, status);
}

export function progressBar(progress) {
  const percent = progress && progress.percent != null ? Math.max(0, Math.min(100, progress.percent)) : 0;
  const bar = h("div", { class: "bar", role: "progressbar", "aria-valuenow": percent, "aria-valuemin": 0, "aria-valuemax": 100 },
    h("div", { class: "fill" }));
  bar.firstChild.style.width = `${percent}%`;  // CSSOM, which the page's CSP allows
  return bar;
}

export function age(iso) {
  if (!iso) return "–";
  const seconds = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (seconds < 60) return `${Math.round(seconds)}s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)}h ago`;
  return `${Math.round(seconds / 86400)}d ago`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  seconds = Math.round(seconds);
  const hours = Math.floor(seconds / 3600), minutes = Math.floor((seconds % 3600) / 60), rest = seconds % 60;
  return hours ? `${hours}h ${minutes}m` : minutes ? `${minutes}m ${rest}s` : `${rest}s`;
}

export function bytes(count) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let unit = 0;
  while (count >= 1024 && unit < units.length - 1) { count /= 1024; unit++; }
  return `${unit ? count.toFixed(1) : count} ${units[unit]}`;
}

const TIME = { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" };
export const time = (iso) => (iso ? new Date(iso).toLocaleString([], TIME) : "–");

// An error answer as lines a person can read (422s name their field).
export function describeError(error) {
  const detail = error instanceof ApiError ? error.detail : String(error.message || error);
  if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).filter((p) => p !== "body").join(".")}: ${d.msg}`);
  return [typeof detail === "string" ? detail : JSON.stringify(detail)];
}

export function errorBox(error) {
  return h("div", { class: "error", role: "alert" }, describeError(error).map((line) => h("div", {}, line)));
}

// The confirmation dialog: resolves true when the person confirms.
export function confirmAction(text, verb) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = verb;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true }));
}

export const ACTIVE = new Set(["queued", "running", "cancelling", "pausing", "interrupted", "early_stopping"]);
export const STATUSES = ["queued", "running", "cancelling", "pausing", "paused", "interrupted", "succeeded", "failed", "cancelled",
  "early_stopping", "early_stopped"];
