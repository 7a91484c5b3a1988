// A system task's details: its configuration as rendered (secrets redacted by the server), the response,
// the error, every attempt; admins get Retry on a failed one.
import { html, useState } from "../lib.js";
import { gql } from "../api.js";
import { RETRY } from "../queries.js";
import { Alert, DataList, when } from "../ui.js";

export function SystemDetails({ task, onDone }) {
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState(null);
  const attempts = task.attempts ?? [];
  const last = attempts[attempts.length - 1];
  const retry = async () => {
    setBusy(true);
    setMessage(null);
    try {
      const { retryTask } = await gql(RETRY, { input: { taskId: task.id } });
      if (retryTask.__typename === "TaskSuccess") onDone(retryTask.task);
      else setMessage(retryTask.message);
    } catch (e) {
      setMessage(e.message);
    } finally {
      setBusy(false);
    }
  };
  return html`<div class="stack system" data-testid="system-details">
    <p class="muted">This task runs by itself; you can follow it here.</p>
    ${task.viewerCanRetry && html`<div class="actions"><button class="button primary" disabled=${busy} onClick=${retry}>Retry</button></div>`}
    ${message && html`<${Alert}>${message}<//>`}
    <section aria-labelledby="sys-config"><h3 id="sys-config">Configuration</h3>
      <${DataList} value=${last?.request ?? task.input} label="Configuration" /></section>
    <section aria-labelledby="sys-response"><h3 id="sys-response">Response</h3>
      <${DataList} value=${task.output ?? last?.response} label="Response" /></section>
    ${last?.error && html`<section aria-labelledby="sys-error"><h3 id="sys-error">Error</h3>
      <pre class="json error-text" data-testid="system-error">${last.error}</pre></section>`}
    <section aria-labelledby="sys-attempts"><h3 id="sys-attempts">Attempts</h3>
      ${attempts.length === 0 ? html`<p class="muted">No attempt yet.</p>` : html`<table class="attempts">
        <thead><tr><th scope="col">#</th><th scope="col">Started</th><th scope="col">Finished</th><th scope="col">Outcome</th></tr></thead>
        <tbody>${attempts.map((a) => html`<tr key=${a.number} data-testid="attempt">
          <td>${a.number}</td><td>${when(a.startedAt)}</td><td>${when(a.finishedAt)}</td>
          <td>${a.error ? html`<span class="error-text">${a.error}</span>` : a.finishedAt ? "succeeded" : "running"}</td></tr>`)}</tbody>
      </table>`}
    </section>
  </div>`;
}
