// The step instance page (seed 000 "Task Execution"): four metric cards, the toggles "Assigned to me" and
// "Show completed tasks", the task list; a task opens in the execution modal (?task=ID in the address).
// Live: the metrics come with every event of this step; the list is patched and then re-read.
import { html, useEffect, useLayoutEffect, useMemo, useRef, useState } from "../lib.js";
import { gql } from "../api.js";
import { answered } from "../first-read.js";
import { STEP, stepVariables } from "../queries.js";
import { onTaskEvent, onResync } from "../live.js";
import { navigate } from "../router.js";
import { Loading, NotFound, Failure, Empty, debounce, useTickets } from "../ui.js";
import { TaskRow } from "./inbox.js";
import { TaskModal } from "../task/modal.js";

// Each card says what it counts (StepInstance.metrics, docs/web-app.md): a To Do task is in Total only.
function Metric({ label, value, name, counts }) {
  return html`<div class=${`metric metric-${name}`} data-testid=${`metric-${name}`}>
    <span class="metric-value">${value}</span><span class="metric-label">${label}</span>
    <span class="metric-counts">${counts}</span></div>`;
}

export function StepPage({ id, me, taskId }) {
  const opening = stepVariables(id);
  const [mine, setMine] = useState(opening.mine);
  const [completed, setCompleted] = useState(opening.completed);
  // The page's first read, when it is in already (first-read.js): the first render shows the tasks.
  const [early] = useState(() => answered(STEP, opening));
  const [step, setStep] = useState(early?.stepInstance);
  const [error, setError] = useState(null);
  const shown = useRef(step);
  shown.current = step;

  const ticket = useTickets();
  const load = async () => {
    const current = ticket(`${id}:${mine}:${completed}`);
    try {
      const data = await gql(STEP, stepVariables(id, mine, completed));
      if (!current()) return;
      setError(null);
      setStep(data.stepInstance);
    } catch (e) {
      if (current()) setError(e);
    }
  };
  // Asked (or the first read taken) as soon as the page is in the document, not a frame later.
  const readAlready = useRef(early !== undefined);
  useLayoutEffect(() => {
    if (readAlready.current) readAlready.current = false;
    else load();
  }, [id, mine, completed]);
  const refresh = useMemo(() => debounce(load, 150), [id, mine, completed]);
  useEffect(() => onResync(refresh), [refresh]);
  useEffect(() => () => refresh.cancel(), [refresh]);
  useEffect(
    () =>
      onTaskEvent((event) => {
        if (event.task.step?.id !== id) return;
        const current = shown.current;
        // Still loading: the read on its way may be older than this event, so read once more after it.
        if (!current) return refresh();
        const edges = current.tasks.edges.map((e) => (e.node.id === event.task.id ? { node: event.task } : e));
        setStep({ ...current, metrics: event.task.step.metrics ?? current.metrics, tasks: { ...current.tasks, edges } });
        refresh();
      }),
    [id, refresh],
  );

  const close = () => navigate(`/app/steps/${id}`);
  if (error) return html`<${Failure} error=${error} retry=${load} />`;
  if (step === undefined) return html`<${Loading} what="Loading the step" />`;
  if (step === null) return html`<${NotFound} what="step" />`;
  const tasks = step.tasks.edges.map((e) => e.node);
  const instance = step.workflowInstance;
  return html`<section class="page" aria-labelledby="step-title">
    <nav class="crumbs" aria-label="Breadcrumb">
      <a href="/app/">Inbox</a>
      ${instance && html` / <a href=${`/app/instances/${instance.id}`}>${instance.definitionKey}</a>`} / <span>${step.title}</span>
    </nav>
    <h1 id="step-title">${step.title}</h1>
    <div class="metrics" aria-label="Task metrics">
      <${Metric} name="total" label="Total tasks" counts="to do, in progress and finished" value=${step.metrics.total} />
      <${Metric} name="active" label="Active" counts="in progress" value=${step.metrics.active} />
      <${Metric} name="completed" label="Completed" counts="done" value=${step.metrics.completed} />
      <${Metric} name="blocked" label="Blocked" counts="failed or expired" value=${step.metrics.blocked} />
    </div>
    <div class="toggles" role="group" aria-label="Display options">
      <label class="switch"><input type="checkbox" role="switch" checked=${mine} onChange=${(e) => setMine(e.target.checked)} /> Assigned to me</label>
      <label class="switch"><input type="checkbox" role="switch" checked=${completed} onChange=${(e) => setCompleted(e.target.checked)} /> Show completed tasks</label>
    </div>
    ${tasks.length === 0
      ? html`<${Empty} title="No tasks to show">${mine ? "None of this step's tasks is assigned to you." : "This step has no tasks yet."}<//>`
      : html`<ul class="task-list" aria-label="Tasks of this step" data-testid="step-tasks">
          ${tasks.map((t) => html`<${TaskRow} key=${t.id} task=${t} href=${`/app/steps/${id}?task=${t.id}`} inStep />`)}
        </ul>`}
    ${taskId && html`<${TaskModal} key=${taskId} id=${taskId} me=${me} onClose=${close} />`}
  </section>`;
}
