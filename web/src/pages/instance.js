// A workflow instance: the milestone timeline (done / current / upcoming) with its steps, its tasks,
// its data and status. Live: any change to one of its tasks re-reads it.
import { html, useEffect, useMemo, useState } from "../lib.js";
import { gql } from "../api.js";
import { INSTANCE } from "../queries.js";
import { onTaskEvent, onResync } from "../live.js";
import { Loading, NotFound, Failure, DataList, debounce, when, useTickets } from "../ui.js";
import { TaskRow, taskHref } from "./inbox.js";

function stepState(step) {
  const m = step.metrics;
  return m.total > 0 && m.completed === m.total ? "done" : "current";
}

function milestoneState(milestone, index, milestones) {
  if (!milestone.steps.length) return "upcoming";
  if (milestone.steps.every((s) => stepState(s) === "done")) {
    const later = milestones.slice(index + 1).some((m) => m.steps.length);
    return later || milestone.steps.length ? "done" : "current";
  }
  return "current";
}

const INSTANCE_STATUS = {
  RUNNING: "Running", WAITING_FOR_SIGNAL: "Waiting for tasks", COMPLETED: "Completed", FAILED: "Failed", CANCELLED: "Cancelled",
};
const STATE_LABEL = { done: "Done", current: "Current", upcoming: "Upcoming" };

export function InstancePage({ id }) {
  const [instance, setInstance] = useState(undefined);
  const [error, setError] = useState(null);
  // Re-reads overlap (an event, a reconnect): an older answer never overwrites a newer one.
  const ticket = useTickets();
  const load = async () => {
    const current = ticket(id);
    try {
      const data = await gql(INSTANCE, { id });
      if (!current()) return;
      setError(null);
      setInstance(data.workflowInstance);
    } catch (e) {
      if (current()) setError(e);
    }
  };
  useEffect(() => void load(), [id]);
  const refresh = useMemo(() => debounce(load, 150), [id]);
  useEffect(() => onTaskEvent((event) => event.task.workflowInstance?.id === id && refresh()), [id]);
  useEffect(() => onResync(refresh), [refresh]);
  useEffect(() => () => refresh.cancel(), [refresh]);

  if (error) return html`<${Failure} error=${error} retry=${load} />`;
  if (instance === undefined) return html`<${Loading} what="Loading the workflow" />`;
  if (instance === null) return html`<${NotFound} what="workflow instance" />`;
  const milestones = instance.milestones;
  return html`<section class="page" aria-labelledby="instance-title">
    <div class="page-head">
      <h1 id="instance-title">${instance.definitionKey} <span class="muted">v${instance.definitionVersion}</span></h1>
      <span class=${`badge instance-${instance.status.toLowerCase()}`} data-testid="instance-status">${INSTANCE_STATUS[instance.status] ?? instance.status}</span>
    </div>
    <p class="muted">Started by ${instance.startedBy.name} · ${when(instance.startedAt)}
      ${instance.completedAt && html` · finished ${when(instance.completedAt)}`}</p>
    <h2>Milestones</h2>
    <ol class="timeline" aria-label="Milestone timeline">
      ${milestones.map((m, i) => {
        const state = milestoneState(m, i, milestones);
        return html`<li class=${`milestone milestone-${state}`} key=${m.key} data-testid="milestone" data-state=${state}>
          <div class="milestone-head"><span class="marker" aria-hidden="true"></span>
            <strong>${m.title}</strong> <span class="muted">${STATE_LABEL[state]}</span></div>
          ${m.steps.length > 0 && html`<ul class="steps">
            ${m.steps.map((s) => html`<li key=${s.id} class=${`step step-${stepState(s)}`}>
              <a href=${`/app/steps/${s.id}`}>${s.title}</a>
              <span class="muted"> ${s.metrics.completed}/${s.metrics.total} done</span></li>`)}
          </ul>`}
        </li>`;
      })}
    </ol>
    <h2>Tasks</h2>
    <ul class="task-list" aria-label="Tasks of this workflow">
      ${instance.tasks.map((t) => html`<${TaskRow} key=${t.id} task=${t} href=${taskHref(t)} />`)}
    </ul>
    <h2>Data</h2>
    <${DataList} value=${instance.data} label="Instance data" />
  </section>`;
}
