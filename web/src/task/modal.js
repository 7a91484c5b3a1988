// The execution modal: the task's header (type, status, assignee and the assign controls), then either
// the work for its type, a system task's details, or the read-only record of a finished task; and the
// Discussion tab. It traps focus and closes on Escape. Live: a change to this task re-reads it.
import { html, useEffect, useMemo, useRef, useState } from "../lib.js";
import { gql } from "../api.js";
import { TASK } from "../queries.js";
import { onTaskEvent, onResync } from "../live.js";
import { Loading, Failure, StatusBadge, PriorityBadge, TypeIcon, Due, DataList, useDialog, debounce, when, typeLabel, useTickets } from "../ui.js";
import { FormWork, ApprovalWork, ActionWork, UploadWork, DocumentList } from "./work.js";
import { SystemDetails } from "./system.js";
import { Discussion } from "./discussion.js";
import { Assignment } from "./assign.js";

const OPEN = ["PENDING", "CLAIMED"];

function Completed({ task }) {
  const who = task.completedBy?.name;
  return html`<div class="stack readonly" data-testid="readonly">
    <p class="alert alert-info" role="status">
      ${task.status === "COMPLETED"
        ? html`Completed${who ? html` by <strong>${who}</strong>` : ""} on ${when(task.completedAt)}.`
        : html`This task is ${task.status.toLowerCase()}.`}
    </p>
    <section aria-labelledby="ro-output"><h3 id="ro-output">Submitted</h3><${DataList} value=${task.output} label="Output" /></section>
    ${task.documents?.length > 0 && html`<section aria-labelledby="ro-docs"><h3 id="ro-docs">Documents</h3><${DocumentList} documents=${task.documents} /></section>`}
  </div>`;
}

function NotYours({ task }) {
  return html`<div class="stack readonly">
    <p class="alert alert-info" role="status">
      ${task.assignee ? html`Assigned to <strong>${task.assignee.name}</strong>; only they can work on it.`
        : "You can see this task but not work on it."}</p>
    <section aria-labelledby="ny-input"><h3 id="ny-input">Input</h3><${DataList} value=${task.input} label="Input" /></section>
    ${task.documents?.length > 0 && html`<${DocumentList} documents=${task.documents} />`}
  </div>`;
}

function Work({ task, onDone, onReload, ownRevision }) {
  if (task.kind === "SYSTEM") return html`<${SystemDetails} task=${task} onDone=${onDone} />`;
  if (!OPEN.includes(task.status)) return html`<${Completed} task=${task} />`;
  if (!task.viewerCanComplete) return html`<${NotYours} task=${task} />`;
  if (task.type === "APPROVAL") return html`<${ApprovalWork} task=${task} onDone=${onDone} onReload=${onReload} ownRevision=${ownRevision} />`;
  if (task.type === "ACTION_APPROVAL") return html`<${ActionWork} task=${task} onDone=${onDone} onReload=${onReload} ownRevision=${ownRevision} />`;
  if (task.type === "DOCUMENT_UPLOAD") return html`<${UploadWork} task=${task} onDone=${onDone} onReload=${onReload} ownRevision=${ownRevision} />`;
  return html`<${FormWork} task=${task} onDone=${onDone} onReload=${onReload} ownRevision=${ownRevision} />`;
}

export function TaskModal({ id, me, onClose }) {
  const [task, setTask] = useState(undefined);
  const [error, setError] = useState(null);
  const [tab, setTab] = useState("details");
  const [generation, setGeneration] = useState(0);
  const dialog = useRef(null);
  useDialog(dialog, onClose);

  // Re-reads overlap (an event, a reconnect, a reload): an older answer never overwrites a newer one.
  const ticket = useTickets();
  const load = async () => {
    const current = ticket(id);
    try {
      const data = await gql(TASK, { id });
      if (!current()) return;
      setError(null);
      setTask(data.task);
    } catch (e) {
      if (current()) setError(e);
    }
  };
  useEffect(() => void load(), [id]);
  const refresh = useMemo(() => debounce(load, 100), [id]);
  useEffect(() => onTaskEvent((event) => event.task.id === id && event.kind !== "MESSAGE_POSTED" && refresh()), [id]);
  useEffect(() => onResync(refresh), [refresh]);
  useEffect(() => () => refresh.cancel(), [refresh]);

  const reload = async () => {
    await load();
    setGeneration((g) => g + 1); // the work's own state (values typed) starts again from the task read
  };
  const [ownRevision, setOwnRevision] = useState(0);
  const done = (updated) => setTask((t) => ({ ...t, ...updated }));
  const assigned = (updated) => {
    done(updated);
    setOwnRevision(updated.revision);
  };

  const titleId = `task-title-${id}`;
  return html`<div class="backdrop" onClick=${(e) => e.target === e.currentTarget && onClose()}>
    <div class="modal" role="dialog" aria-modal="true" aria-labelledby=${titleId} ref=${dialog} tabindex="-1" data-testid="task-modal">
      <div class="modal-head">
        ${task && html`<${TypeIcon} type=${task.type} />`}
        <h2 id=${titleId}>${task ? task.title : task === null ? "Task not found" : "Loading…"}</h2>
        <button class="icon-button close" type="button" aria-label="Close" onClick=${onClose}>×</button>
      </div>
      ${error && html`<${Failure} error=${error} retry=${load} />`}
      ${!error && task === undefined && html`<${Loading} what="Loading the task" />`}
      ${task === null && html`<p class="state" data-state="not-found">This task does not exist, or you may not see it.</p>`}
      ${task && html`
        <div class="modal-meta">
          <span class="muted">${typeLabel(task.type)}</span>
          <${StatusBadge} task=${task} /><${PriorityBadge} priority=${task.priority} /><${Due} task=${task} />
          <${Assignment} task=${task} me=${me} onChange=${assigned} />
        </div>
        ${task.description && html`<p class="description">${task.description}</p>`}
        <div class="tabs" role="tablist" aria-label="Task">
          <button role="tab" id="tab-details" aria-selected=${tab === "details"} aria-controls="panel-details"
            tabindex=${tab === "details" ? 0 : -1} onClick=${() => setTab("details")}>Details</button>
          <button role="tab" id="tab-discussion" aria-selected=${tab === "discussion"} aria-controls="panel-discussion"
            tabindex=${tab === "discussion" ? 0 : -1} onClick=${() => setTab("discussion")}>Discussion</button>
        </div>
        <div role="tabpanel" id="panel-details" aria-labelledby="tab-details" hidden=${tab !== "details"}>
          <${Work} key=${`${task.id}:${generation}:${OPEN.includes(task.status)}`} task=${task} onDone=${done} onReload=${reload} ownRevision=${ownRevision} />
        </div>
        <div role="tabpanel" id="panel-discussion" aria-labelledby="tab-discussion" hidden=${tab !== "discussion"}>
          ${tab === "discussion" && html`<${Discussion} taskId=${task.id} me=${me} />`}
        </div>`}
    </div>
  </div>`;
}
