// The inbox: the tasks the viewer may see (assigned to them, their roles' and groups' queues), with filters,
// sort, cursor paging and the total. Live: a change to a shown task patches its row; any change re-reads
// the loaded range (totals, order, new tasks) once the burst of events is over.
import { html, useEffect, useMemo, useRef, useState } from "../lib.js";
import { gql } from "../api.js";
import { INBOX } from "../queries.js";
import { onTaskEvent, onResync } from "../live.js";
import {
  Loading, Empty, Failure, StatusBadge, PriorityBadge, TypeIcon, Due, assigneeText, debounce, isOverdue, useTickets,
} from "../ui.js";

const PAGE = 25;
const STATUSES = [["", "Open (any)"], ["PENDING", "To Do"], ["CLAIMED", "Claimed"], ["RUNNING", "Running"],
  ["WAITING", "Waiting"], ["FAILED", "Failed"], ["COMPLETED", "Completed"]];
const PRIORITIES = [["", "Any"], ["URGENT", "Urgent"], ["HIGH", "High"], ["NORMAL", "Normal"], ["LOW", "Low"]];
const KINDS = [["", "Any"], ["USER", "People's tasks"], ["SYSTEM", "System tasks"]];
const TYPES = [["", "All"], ["FORM", "Form"], ["APPROVAL", "Approval"], ["DOCUMENT_UPLOAD", "Document upload"],
  ["ACTION_APPROVAL", "Action approval"], ["HTTP", "System: HTTP"], ["GRAPHQL", "System: GraphQL"],
  ["JAVASCRIPT", "System: JavaScript"], ["EMAIL", "System: Email"], ["DELAY", "System: Delay"],
  ["ECHO", "System: Echo"], ["CUSTOM", "Custom"]];
const DUES = [["", "Any time"], ["overdue", "Overdue"], ["today", "Due by end of today"], ["week", "Due within 7 days"]];
const SORTS = [["CREATED_AT:DESC", "Newest first"], ["CREATED_AT:ASC", "Oldest first"], ["DUE_AT:ASC", "Due soonest"],
  ["PRIORITY:DESC", "Highest priority"]];

function dueBefore(due) {
  const now = new Date();
  if (due === "overdue") return now.toISOString();
  if (due === "today") return new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1).toISOString();
  if (due === "week") return new Date(now.getTime() + 7 * 86_400_000).toISOString();
  return null;
}

function variables(filters, first, after = null) {
  const [field, direction] = filters.sort.split(":");
  const filter = {
    assignedToMe: filters.mine || null,
    status: filters.status ? [filters.status] : null,
    includeCompleted: filters.status === "COMPLETED" || null,
    priority: filters.priority ? [filters.priority] : null,
    kind: filters.kind || null,
    type: filters.type ? [filters.type] : null,
    dueBefore: dueBefore(filters.due),
  };
  return { filter, order: { field, direction }, first, after };
}

function Select({ id, label, value, options, onChange }) {
  return html`<div class="filter">
    <label for=${id}>${label}</label>
    <select id=${id} value=${value} onChange=${(e) => onChange(e.target.value)}>
      ${options.map(([v, text]) => html`<option value=${v} key=${v}>${text}</option>`)}
    </select>
  </div>`;
}

// ``inStep``: on its step's own page, which names the step and the workflow already.
export function TaskRow({ task, href, inStep = false }) {
  return html`<li class=${`task-row${isOverdue(task) ? " is-overdue" : ""}`} data-task-id=${task.id} data-testid="task-row">
    <${TypeIcon} type=${task.type} />
    <div class="task-main">
      <a class="task-title" href=${href}>${task.title}</a>
      <div class="task-meta">
        ${!inStep && html`<span>${task.workflowInstance?.definitionKey}</span> · <span>${task.step?.title}</span>`}
        ${task.description && html`${!inStep && " · "}<span class="task-description">${task.description}</span>`}
      </div>
    </div>
    <div class="task-side">
      <${PriorityBadge} priority=${task.priority} />
      <${Due} task=${task} />
      <${StatusBadge} task=${task} />
      <span class="assignee" data-testid="assignee">${assigneeText(task)}</span>
    </div>
  </li>`;
}

export function taskHref(task) {
  return `/app/steps/${task.step.id}?task=${task.id}`;
}

export function Inbox({ me }) {
  const [filters, setFilters] = useState({ mine: false, status: "", priority: "", kind: "", type: "", due: "", sort: "CREATED_AT:DESC" });
  const [page, setPage] = useState(null);
  const [error, setError] = useState(null);
  const [more, setMore] = useState(false);
  // How many rows the person has asked for (Load more adds a page): a re-read reads that many, even one that
  // starts while a Load more is on its way.
  const size = useRef(PAGE);

  const ticket = useTickets();
  const load = async (first = PAGE) => {
    const current = ticket(JSON.stringify(filters));
    try {
      const data = await gql(INBOX, variables(filters, first));
      if (!current()) return;
      setError(null);
      setPage(data.tasks);
    } catch (e) {
      if (current()) setError(e);
    }
  };

  const shown = useRef(page);
  shown.current = page;
  useEffect(() => {
    setPage(null);
    size.current = PAGE;
    load();
  }, [filters]);

  const refresh = useMemo(() => debounce(() => load(size.current), 150), [filters]);

  useEffect(
    () =>
      onTaskEvent((event) => {
        const now = shown.current;
        if (now?.edges.some((e) => e.node.id === event.task.id)) {
          setPage({ ...now, edges: now.edges.map((e) => (e.node.id === event.task.id ? { ...e, node: event.task } : e)) });
        }
        refresh();
      }),
    [refresh],
  );
  useEffect(() => onResync(refresh), [refresh]);
  useEffect(() => () => refresh.cancel(), [refresh]);

  const loadMore = async () => {
    setMore(true);
    size.current = page.edges.length + PAGE;
    const current = ticket(JSON.stringify(filters));
    try {
      const data = await gql(INBOX, variables(filters, PAGE, page.pageInfo.endCursor));
      if (current()) setPage({ ...data.tasks, edges: [...page.edges, ...data.tasks.edges] });
    } catch (e) {
      setError(e);
    } finally {
      setMore(false);
    }
  };

  const set = (key) => (value) => setFilters({ ...filters, [key]: value });
  const overdue = page?.edges.filter((e) => isOverdue(e.node)).length ?? 0;

  return html`<section class="page inbox" aria-labelledby="inbox-title">
    <div class="page-head">
      <h1 id="inbox-title">Inbox</h1>
      ${page && html`<p class="totals" data-testid="totals">
        <strong data-testid="total-count">${page.totalCount}</strong>${page.totalCount === 1 ? " task" : " tasks"}
        ${overdue > 0 && html`<span> · </span><span class="overdue">${overdue} overdue shown</span>`}
        <span> · showing ${page.edges.length}</span></p>`}
    </div>
    <form class="filters" aria-label="Filters" onSubmit=${(e) => e.preventDefault()}>
      <div class="filter toggle">
        <input type="checkbox" id="f-mine" checked=${filters.mine} onChange=${(e) => set("mine")(e.target.checked)} />
        <label for="f-mine">Assigned to me</label>
      </div>
      <${Select} id="f-status" label="Status" value=${filters.status} options=${STATUSES} onChange=${set("status")} />
      <${Select} id="f-priority" label="Priority" value=${filters.priority} options=${PRIORITIES} onChange=${set("priority")} />
      <${Select} id="f-kind" label="Kind" value=${filters.kind} options=${KINDS} onChange=${set("kind")} />
      <${Select} id="f-type" label="Type" value=${filters.type} options=${TYPES} onChange=${set("type")} />
      <${Select} id="f-due" label="Due" value=${filters.due} options=${DUES} onChange=${set("due")} />
      <${Select} id="f-sort" label="Sort" value=${filters.sort} options=${SORTS} onChange=${set("sort")} />
    </form>
    ${error && html`<${Failure} error=${error} retry=${() => load()} />`}
    ${!error && !page && html`<${Loading} what="Loading your tasks" />`}
    ${page && page.edges.length === 0 &&
    html`<${Empty} title="Nothing here">No tasks match. New tasks for you, your roles and your groups appear here as they arrive.<//>`}
    ${page && page.edges.length > 0 &&
    html`<ul class="task-list" aria-label="Tasks">
      ${page.edges.map((e) => html`<${TaskRow} key=${e.node.id} task=${e.node} href=${taskHref(e.node)} />`)}
    </ul>`}
    ${page?.pageInfo.hasNextPage &&
    html`<button class="button load-more" disabled=${more} onClick=${loadMore}>${more ? "Loading…" : "Load more"}</button>`}
  </section>`;
}
