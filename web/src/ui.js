// Shared pieces: the designed states (loading, empty, not found, forbidden, server down), badges, icons,
// toasts, and formatting.
import { html, store, useStore, useEffect, useRef } from "./lib.js";

export const toasts = store([]);
let toastId = 0;

export function toast(text, tone = "info") {
  const id = ++toastId;
  toasts.set([...toasts.get(), { id, text, tone }].slice(-4));
  setTimeout(() => toasts.set(toasts.get().filter((t) => t.id !== id)), 6_000);
}

export function Toasts() {
  const items = useStore(toasts);
  return html`<div class="toasts" role="region" aria-label="Notifications" aria-live="polite">
    ${items.map(
      (t) => html`<div class="toast toast-${t.tone}" key=${t.id} data-testid="toast">
        <span>${t.text}</span>
        <button class="icon-button" aria-label="Dismiss" onClick=${() => toasts.set(toasts.get().filter((x) => x.id !== t.id))}>×</button>
      </div>`,
    )}
  </div>`;
}

export function Loading({ what = "Loading" }) {
  return html`<div class="state state-loading" role="status" aria-live="polite"><span class="spinner" aria-hidden="true"></span>${what}…</div>`;
}

export function Empty({ title, children }) {
  return html`<div class="state state-empty" data-state="empty"><h2>${title}</h2><p>${children}</p></div>`;
}

export function NotFound({ what = "page" }) {
  return html`<div class="state state-missing" data-state="not-found" role="alert">
    <h2>Not found</h2>
    <p>This ${what} does not exist, or you may not see it.</p>
    <p><a href="/app/" data-link>Back to the inbox</a></p>
  </div>`;
}

// What the viewer may see but not do (the API's FORBIDDEN): said plainly, with the way back.
export function Forbidden({ children }) {
  return html`<div class="state state-forbidden" data-state="forbidden" role="alert">
    <h2>Not allowed</h2>
    <p>${children}</p>
    <p><a href="/app/">Back to the inbox</a></p>
  </div>`;
}

export function Failure({ error, retry }) {
  if (error?.kind === "forbidden") return html`<${Forbidden}>${error.message}<//>`;
  if (error?.kind === "network") {
    return html`<div class="state state-down" data-state="server-down" role="alert">
      <h2>The server is not answering</h2>
      <p>${error.message} Your work in this page is kept; try again in a moment.</p>
      ${retry && html`<button class="button" onClick=${retry}>Try again</button>`}
    </div>`;
  }
  return html`<div class="state state-error" data-state="error" role="alert">
    <h2>Something went wrong</h2><p>${error?.message ?? String(error)}</p>
    ${retry && html`<button class="button" onClick=${retry}>Try again</button>`}
  </div>`;
}

export function Alert({ children, tone = "error" }) {
  return html`<div class="alert alert-${tone}" role=${tone === "error" ? "alert" : "status"}>${children}</div>`;
}

const STATUS_LABEL = { TO_DO: "To Do", IN_PROGRESS: "In Progress", COMPLETED: "Completed", FAILED: "Failed" };

export function StatusBadge({ task }) {
  return html`<span class="badge badge-${task.displayStatus.toLowerCase()}" data-testid="status" title=${task.status}>
    ${STATUS_LABEL[task.displayStatus] ?? task.displayStatus}</span>`;
}

export function PriorityBadge({ priority }) {
  if (!priority || priority === "NORMAL") return null;
  return html`<span class="badge priority-${priority.toLowerCase()}" data-testid="priority">${priority.toLowerCase()}</span>`;
}

export function isOverdue(task) {
  return !!task.dueAt && !["COMPLETED", "FAILED"].includes(task.displayStatus) && new Date(task.dueAt) < new Date();
}

export function Due({ task }) {
  if (!task.dueAt) return null;
  const overdue = isOverdue(task);
  return html`<span class=${overdue ? "due overdue" : "due"} data-testid=${overdue ? "overdue" : "due"}>
    ${overdue ? "Overdue · " : "Due "}${when(task.dueAt)}</span>`;
}

const TYPE_LABEL = {
  FORM: "Form", APPROVAL: "Approval", ACTION_APPROVAL: "Action approval", DOCUMENT_UPLOAD: "Document upload", HTTP: "HTTP request",
  GRAPHQL: "GraphQL", JAVASCRIPT: "JavaScript", EMAIL: "Send email", DELAY: "Delay", ECHO: "Echo", CUSTOM: "Custom",
};
const TYPE_PATH = {
  FORM: "M5 3h10l4 4v14H5zM8 10h8M8 14h8M8 18h5",
  APPROVAL: "M4 12l5 5L20 6",
  ACTION_APPROVAL: "M4 12l5 5L20 6M14 4h6v6",
  DOCUMENT_UPLOAD: "M12 16V4M7 9l5-5 5 5M4 20h16",
  HTTP: "M3 12h18M12 3a15 15 0 010 18M12 3a15 15 0 000 18M3 12a9 9 0 1018 0 9 9 0 10-18 0",
  GRAPHQL: "M12 3l8 4.5v9L12 21l-8-4.5v-9zM12 3v18M4 7.5l16 9M20 7.5l-16 9",
  JAVASCRIPT: "M9 7l-5 5 5 5M15 7l5 5-5 5",
  EMAIL: "M3 6h18v12H3zM3 6l9 7 9-7",
  DELAY: "M12 7v5l3 3M3 12a9 9 0 1018 0 9 9 0 10-18 0",
  ECHO: "M4 8h12l-3-3M20 16H8l3 3",
  CUSTOM: "M12 4v16M4 12h16",
};

export function typeLabel(type) {
  return TYPE_LABEL[type] ?? type;
}

export function TypeIcon({ type }) {
  return html`<span class="type-icon type-${type.toLowerCase()}" role="img" aria-label=${typeLabel(type)} title=${typeLabel(type)} data-type=${type}>
    <svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true"><path d=${TYPE_PATH[type] ?? TYPE_PATH.CUSTOM} fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"/></svg>
  </span>`;
}

export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function bytes(n) {
  if (n == null) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function assigneeText(task) {
  if (task.assignee) return task.assignee.name;
  if (task.assignedRole) return `Role: ${task.assignedRole}`;
  if (task.assignedGroup) return `Group: ${task.assignedGroup}`;
  return task.kind === "SYSTEM" ? "System" : "Unassigned";
}

// A JSON value as a readable definition list (nested values as JSON text).
export function DataList({ value, label }) {
  if (value == null || (typeof value === "object" && Object.keys(value).length === 0)) {
    return html`<p class="muted">None.</p>`;
  }
  if (typeof value !== "object" || Array.isArray(value)) return html`<pre class="json">${JSON.stringify(value, null, 2)}</pre>`;
  return html`<dl class="data" aria-label=${label}>
    ${Object.entries(value).map(
      ([k, v]) => html`<div class="data-row" key=${k}><dt>${k}</dt><dd>${
        v !== null && typeof v === "object" ? html`<pre class="json">${JSON.stringify(v, null, 2)}</pre>` : String(v)
      }</dd></div>`,
    )}
  </dl>`;
}

// Focus trap and Escape for dialogs: focus moves in on open, cycles inside, and goes back on close.
export function useDialog(ref, onClose) {
  useEffect(() => {
    const previous = document.activeElement;
    const node = ref.current;
    const focusables = () =>
      [...node.querySelectorAll("a[href],button:not([disabled]),input:not([disabled]),select,textarea,[tabindex]:not([tabindex='-1'])")]
        .filter((el) => el.offsetParent !== null || el === document.activeElement);
    (node.querySelector("[autofocus]") ?? focusables()[0] ?? node).focus();
    // On the document: a button that disables itself while it works drops the focus to the body.
    const onKey = (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        onClose();
      } else if (e.key === "Tab") {
        const items = focusables();
        if (!items.length) return;
        if (!node.contains(document.activeElement)) {
          e.preventDefault();
          items[0].focus();
          return;
        }
        const first = items[0];
        const last = items[items.length - 1];
        if (e.shiftKey && document.activeElement === first) {
          e.preventDefault();
          last.focus();
        } else if (!e.shiftKey && document.activeElement === last) {
          e.preventDefault();
          first.focus();
        }
      }
    };
    document.addEventListener("keydown", onKey);
    return () => {
      document.removeEventListener("keydown", onKey);
      if (previous && document.contains(previous)) previous.focus();
    };
  }, []);
}

// Runs `fn` at most once per `ms`, at the end of a burst (events often arrive several at once).
export function debounce(fn, ms = 120) {
  let timer = null;
  const run = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  run.cancel = () => clearTimeout(timer);
  return run;
}

export function useLatest(value) {
  const ref = useRef(value);
  ref.current = value;
  return ref;
}

// For a page that re-reads: ``const current = ticket(key)`` before a request (``key``: what it asks, e.g. the
// filters), ``if (current())`` when it answers. An answer is taken when it asks what the page now shows and
// no later answer was taken already: another filter's answer, or an earlier read coming in after a later
// one, never overwrites; a re-read started while the first read is on its way does not hold up the first.
export function useTickets() {
  const state = useRef({ started: 0, taken: 0, key: undefined });
  return (key) => {
    const s = state.current;
    const mine = ++s.started;
    s.key = key;
    return () => {
      if (s.key !== key || mine < s.taken) return false;
      s.taken = mine;
      return true;
    };
  };
}
