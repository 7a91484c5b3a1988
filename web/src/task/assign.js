// Assignment: who holds the task; "Assign to me" where the viewer may claim; for admins and managers a
// user picker to change or clear the assignee. Buttons follow the viewerCan… fields; a refusal is shown.
import { html, useEffect, useState } from "../lib.js";
import { gql } from "../api.js";
import { CLAIM, ASSIGN, USERS } from "../queries.js";
import { assigneeText } from "../ui.js";

let directory = null; // the users, read once per page load (only supervisors may read it)

export function Assignment({ task, me, onChange }) {
  const [users, setUsers] = useState(directory);
  const [chosen, setChosen] = useState(task.assignee?.id ?? "");
  const [message, setMessage] = useState(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    if (!task.viewerCanAssign || users) return;
    gql(USERS)
      .then(({ users: found }) => (found.__typename === "UserList" ? setUsers((directory = found.users)) : setMessage(found.message)))
      .catch((e) => setMessage(e.message));
  }, [task.viewerCanAssign]);
  useEffect(() => setChosen(task.assignee?.id ?? ""), [task.assignee?.id]);

  const act = async (document, input) => {
    setBusy(true);
    setMessage(null);
    try {
      const result = Object.values(await gql(document, { input: { taskId: task.id, ...input } }))[0];
      if (result.__typename === "TaskSuccess") onChange(result.task);
      else setMessage(result.message);
    } catch (e) {
      setMessage(e.message);
    } finally {
      setBusy(false);
    }
  };

  return html`<div class="assignment">
    <span class="assignee" data-testid="modal-assignee">${task.assignee?.id === me.id ? "Assigned to you" : assigneeText(task)}</span>
    ${task.viewerCanClaim && html`<button class="button small" disabled=${busy} onClick=${() => act(CLAIM, {})}>Assign to me</button>`}
    ${task.viewerCanAssign && users && html`<span class="picker">
      <label for="assignee-picker" class="visually-hidden">Assignee</label>
      <select id="assignee-picker" value=${chosen} onChange=${(e) => setChosen(e.target.value)}>
        <option value="">Nobody</option>
        ${users.map((u) => html`<option key=${u.id} value=${u.id}>${u.name}</option>`)}
      </select>
      <button class="button small" disabled=${busy} onClick=${() => act(ASSIGN, { userId: chosen || null })}>
        ${chosen ? "Assign" : "Unassign"}</button>
    </span>`}
    ${message && html`<span class="field-error" role="alert">${message}</span>`}
  </div>`;
}
