// The work a person does in the execution modal: a form (Save Progress / Submit), an approval
// (Approve / Reject with a comment) and a document upload (requirements, drag-and-drop, per-file progress).
// A result's typed error is shown where it belongs: a field's next to it, a revision conflict with a reload.
import { html, useState, useRef, useEffect } from "../lib.js";
import { gql, upload } from "../api.js";
import { SAVE, SUBMIT, APPROVE, REJECT, UPLOAD, DECIDE_ACTION } from "../queries.js";
import { Field, fieldErrors, cleanValues } from "./fields.js";
import { Alert, DataList, bytes } from "../ui.js";

function Conflict({ onReload }) {
  return html`<div class="alert alert-warning" role="alert" data-testid="conflict">
    <p><strong>Someone else changed this task since you opened it.</strong> Reload to see their version;
    your unsaved entries here will be replaced.</p>
    <button class="button" type="button" onClick=${onReload}>Reload</button>
  </div>`;
}

// Runs a mutation returning TaskResult; hands back the new task, or shows the error where it belongs.
// ``ownRevision``: the task's revision after the viewer's own change elsewhere in the modal (claiming it):
// expected from then on. Someone else's change is not taken over: saving over it is the conflict to show.
function useTaskAction(task, fields, onDone, ownRevision) {
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState({ byKey: {}, other: [], message: null, conflict: false, saved: null });
  const revision = useRef(task.revision);
  useEffect(() => {
    if (ownRevision > revision.current) revision.current = ownRevision;
  }, [ownRevision]);
  const run = async (document, input, { saved = null, done = true } = {}) => {
    setBusy(true);
    setErrors({ byKey: {}, other: [], message: null, conflict: false, saved: null });
    try {
      const data = await gql(document, { input: { taskId: task.id, expectedRevision: revision.current, ...input } });
      const result = Object.values(data)[0];
      if (result.__typename === "TaskSuccess") {
        revision.current = result.task.revision;
        setErrors({ byKey: {}, other: [], message: null, conflict: false, saved });
        if (done) onDone(result.task);
        return result.task;
      }
      if (result.__typename === "Conflict") setErrors((e) => ({ ...e, conflict: true }));
      else if (result.__typename === "ValidationFailed") {
        const { byKey, other } = fieldErrors(result, fields);
        setErrors((e) => ({ ...e, byKey, other, message: result.message }));
      } else setErrors((e) => ({ ...e, message: result.message }));
    } catch (err) {
      setErrors((e) => ({ ...e, message: err.message }));
    } finally {
      setBusy(false);
    }
    return null;
  };
  return { busy, errors, run, revision };
}

function Messages({ errors, onReload }) {
  return html`
    ${errors.conflict && html`<${Conflict} onReload=${onReload} />`}
    ${errors.message && html`<${Alert}><p>${errors.message}</p>
      ${errors.other.length > 0 && html`<ul>${errors.other.map((o) => html`<li key=${o}>${o}</li>`)}</ul>`}<//>`}
    ${errors.saved && html`<${Alert} tone="success">${errors.saved}<//>`}`;
}

export function FormWork({ task, onDone, onReload, ownRevision }) {
  const fields = task.form?.fields ?? [];
  const [values, setValues] = useState(() => ({ ...(task.draft ?? {}) }));
  const { busy, errors, run } = useTaskAction(task, fields, onDone, ownRevision);
  const set = (key) => (value) => setValues((v) => ({ ...v, [key]: value }));
  const submit = (e) => {
    e.preventDefault();
    run(SUBMIT, { values: cleanValues(fields, values) });
  };
  return html`<form class="work-form stack" onSubmit=${submit} noValidate aria-label="Form">
    ${task.draft && html`<p class="muted" data-testid="draft-restored">Your saved progress is restored.</p>`}
    <p class="muted"><span class="required" aria-hidden="true">*</span> marks a required field.</p>
    ${fields.map((f) => html`<${Field} key=${f.key} field=${f} value=${values[f.key]} onChange=${set(f.key)} error=${errors.byKey[f.key]} />`)}
    <${Messages} errors=${errors} onReload=${onReload} />
    <div class="actions">
      <button class="button" type="button" disabled=${busy}
        onClick=${() => run(SAVE, { values: cleanValues(fields, values) }, { saved: "Progress saved.", done: false })}>Save Progress</button>
      <button class="button primary" type="submit" disabled=${busy}>Submit</button>
    </div>
  </form>`;
}

export function ApprovalWork({ task, onDone, onReload, ownRevision }) {
  const fields = task.form?.fields ?? [];
  const [values, setValues] = useState(() => ({ ...(task.draft ?? {}) }));
  const [comment, setComment] = useState("");
  const { busy, errors, run } = useTaskAction(task, fields, onDone, ownRevision);
  const decide = (document) => run(document, { comment: comment || null, values: fields.length ? cleanValues(fields, values) : null });
  return html`<div class="stack">
    ${Object.keys(task.input ?? {}).length > 0 && html`<section aria-labelledby="approval-request"><h3 id="approval-request">Request</h3>
      <${DataList} value=${task.input} label="Task input" /></section>`}
    <section aria-labelledby="approval-previous"><h3 id="approval-previous">Previous tasks' outputs</h3>
      <${DataList} value=${task.workflowInstance?.data} label="Workflow data" /></section>
    <form class="stack" onSubmit=${(e) => e.preventDefault()} aria-label="Decision">
      ${fields.map((f) => html`<${Field} key=${f.key} field=${f} value=${values[f.key]} onChange=${(v) => setValues({ ...values, [f.key]: v })} error=${errors.byKey[f.key]} />`)}
      <div class="field"><label for="approval-comment">Comment (optional)</label>
        <textarea id="approval-comment" rows="3" value=${comment} onInput=${(e) => setComment(e.target.value)}></textarea></div>
      <${Messages} errors=${errors} onReload=${onReload} />
      <div class="actions">
        <button class="button danger" type="button" disabled=${busy} onClick=${() => decide(REJECT)}>Reject</button>
        <button class="button primary" type="button" disabled=${busy} onClick=${() => decide(APPROVE)}>Approve</button>
      </div>
    </form>
  </div>`;
}

// An automated caller's proposed action (an action approval): approve it, edit its arguments (JSON, checked on the
// server against the action's schema: a bad edit names its paths), reject it, or answer in words.
export function ActionWork({ task, onDone, onReload, ownRevision }) {
  const proposal = task.input ?? {};
  const [text, setText] = useState(() => JSON.stringify(proposal.arguments ?? {}, null, 2));
  const [feedback, setFeedback] = useState("");
  const [invalid, setInvalid] = useState(null);
  const { busy, errors, run } = useTaskAction(task, [], onDone, ownRevision);
  const decide = (decision) => {
    const input = { decision, feedback: feedback || null };
    if (decision === "EDITED") {
      try {
        input.arguments = JSON.parse(text);
      } catch (e) {
        setInvalid(`The arguments are not JSON: ${e.message}`);
        return;
      }
    }
    setInvalid(null);
    run(DECIDE_ACTION, input);
  };
  const edited = text !== JSON.stringify(proposal.arguments ?? {}, null, 2);
  return html`<div class="stack">
    <section aria-labelledby="action-request"><h3 id="action-request">${proposal.action}</h3>
      ${proposal.summary && html`<p>${proposal.summary}</p>`}
      <p>Requested by <strong data-testid="requested-by">${proposal.requestedBy ?? "unknown"}</strong></p></section>
    <form class="stack" onSubmit=${(e) => e.preventDefault()} aria-label="Decision">
      <div class="field"><label for="action-arguments">Arguments (edit to approve with changes)</label>
        <textarea id="action-arguments" rows="8" spellcheck="false" value=${text} onInput=${(e) => setText(e.target.value)}></textarea></div>
      <div class="field"><label for="action-feedback">Feedback or answer (required to respond)</label>
        <textarea id="action-feedback" rows="3" value=${feedback} onInput=${(e) => setFeedback(e.target.value)}></textarea></div>
      ${invalid && html`<${Alert}><p>${invalid}</p><//>`}
      <${Messages} errors=${errors} onReload=${onReload} />
      <div class="actions">
        <button class="button danger" type="button" disabled=${busy} onClick=${() => decide("REJECTED")}>Reject</button>
        <button class="button" type="button" disabled=${busy} onClick=${() => decide("RESPONDED")}>Respond</button>
        <button class="button primary" type="button" disabled=${busy} onClick=${() => decide(edited ? "EDITED" : "APPROVED")}>
          ${edited ? "Approve with edits" : "Approve"}</button>
      </div>
    </form>
  </div>`;
}

function accepts(requirement, file) {
  if (!requirement.accept?.length) return true;
  const type = (file.type || "").toLowerCase();
  const name = file.name.toLowerCase();
  return requirement.accept.some((a) => {
    const rule = a.toLowerCase();
    if (rule.startsWith(".")) return name.endsWith(rule);
    if (rule.endsWith("/*")) return type.startsWith(rule.slice(0, -1));
    return type === rule;
  });
}

export function isMet(requirement, documents) {
  return documents.filter((d) => d.requirementKey === requirement.key).length >= requirement.minFiles;
}

function Requirement({ task, requirement, documents, onUploaded }) {
  const [items, setItems] = useState([]); // {id, name, progress, error, done}
  const [over, setOver] = useState(false);
  const input = useRef(null);
  const mine = documents.filter((d) => d.requirementKey === requirement.key);
  const update = (id, change) => setItems((all) => all.map((i) => (i.id === id ? { ...i, ...change } : i)));

  const take = (files) => {
    let room = requirement.maxFiles == null ? Infinity : requirement.maxFiles - mine.length;
    for (const file of files) {
      const id = `${file.name}-${Math.random().toString(36).slice(2)}`;
      let error = null;
      if (!accepts(requirement, file)) error = `${file.name}: not an accepted type (${requirement.accept.join(", ")})`;
      else if (requirement.maxBytes != null && file.size > requirement.maxBytes) error = `${file.name}: larger than ${bytes(requirement.maxBytes)}`;
      else if (room <= 0) error = `${file.name}: at most ${requirement.maxFiles} file(s) for ${requirement.label}`;
      if (error) {
        setItems((all) => [...all, { id, name: file.name, progress: 0, error, done: false }]);
        continue;
      }
      room--;
      setItems((all) => [...all, { id, name: file.name, progress: 0, error: null, done: false }]);
      upload(UPLOAD, { taskId: task.id, requirementKey: requirement.key }, "files", [file], (p) => update(id, { progress: p }))
        .then((data) => {
          const result = data.uploadTaskDocuments;
          if (result.__typename === "DocumentsSuccess") {
            update(id, { progress: 1, done: true });
            onUploaded(result.documents, result.task.revision);
          } else {
            const detail = (result.fieldErrors ?? []).map((f) => f.message).join("; ");
            update(id, { error: `${file.name}: ${detail || result.message}` });
          }
        })
        .catch((err) => update(id, { error: `${file.name}: ${err.message}` }));
    }
  };

  const met = isMet(requirement, documents);
  const inputId = `upload-${requirement.key}`;
  return html`<li class=${`requirement${met ? " met" : ""}`} data-requirement=${requirement.key}>
    <div class="requirement-head">
      <strong>${requirement.label}</strong>
      <span class=${met ? "badge badge-completed" : "badge badge-to_do"}>${met ? "Met" : "Needed"}</span>
    </div>
    <p class="muted">${requirement.accept.length ? requirement.accept.join(", ") : "Any type"}
      ${requirement.maxBytes != null && ` · up to ${bytes(requirement.maxBytes)} each`}
      · ${requirement.minFiles > 0 ? `at least ${requirement.minFiles}` : "optional"}${requirement.maxFiles != null ? `, at most ${requirement.maxFiles}` : ""}</p>
    <div class=${`dropzone${over ? " over" : ""}`} data-testid=${`dropzone-${requirement.key}`}
      onDragOver=${(e) => { e.preventDefault(); setOver(true); }}
      onDragLeave=${() => setOver(false)}
      onDrop=${(e) => { e.preventDefault(); setOver(false); take([...e.dataTransfer.files]); }}>
      <p>Drag and drop files here, or</p>
      <button class="button" type="button" onClick=${() => input.current.click()}>Browse…</button>
      <input class="visually-hidden" id=${inputId} ref=${input} type="file" multiple tabindex="-1"
        accept=${requirement.accept.join(",")} aria-label=${`Files for ${requirement.label}`}
        onChange=${(e) => { take([...e.target.files]); e.target.value = ""; }} />
    </div>
    ${items.length > 0 && html`<ul class="uploads">${items.map((i) => html`<li key=${i.id} class=${i.error ? "upload-failed" : i.done ? "upload-done" : ""}>
      ${i.error ? html`<span class="field-error" role="alert">${i.error}</span>`
        : html`<span>${i.name}</span> <progress max="1" value=${i.progress} aria-label=${`Uploading ${i.name}`}></progress>
          <span class="muted">${i.done ? "uploaded" : `${Math.round(i.progress * 100)}%`}</span>`}
    </li>`)}</ul>`}
    <${DocumentList} documents=${mine} />
  </li>`;
}

export function DocumentList({ documents }) {
  if (!documents.length) return null;
  return html`<ul class="documents" aria-label="Uploaded documents">
    ${documents.map((d) => html`<li key=${d.id} data-testid="document">
      <button class="link" type="button" onClick=${() => import("../api.js").then((api) => api.download(d.url, d.filename))}>${d.filename}</button>
      <span class="muted"> ${bytes(d.size)} · ${d.uploadedBy?.name}</span></li>`)}
  </ul>`;
}

export function UploadWork({ task, onDone, onReload, ownRevision }) {
  const [documents, setDocuments] = useState(task.documents ?? []);
  const { busy, errors, run, revision } = useTaskAction(task, [], onDone, ownRevision);
  const requirements = task.documentRequirements ?? [];
  const met = requirements.filter((r) => isMet(r, documents)).length;
  return html`<div class="stack">
    <p class="requirements-met" data-testid="requirements-met" aria-live="polite">
      <strong>${met}/${requirements.length}</strong> requirements met</p>
    <ul class="requirements">
      ${requirements.map((r) => html`<${Requirement} key=${r.key} task=${task} requirement=${r} documents=${documents}
        onUploaded=${(added, newRevision) => {
          // An upload changes the task (it claims it, too): Submit expects the revision after it.
          revision.current = Math.max(revision.current, newRevision);
          setDocuments((all) => [...all, ...added]);
        }} />`)}
    </ul>
    <${Messages} errors=${errors} onReload=${onReload} />
    <div class="actions"><button class="button primary" type="button" disabled=${busy} onClick=${() => run(SUBMIT, { values: null })}>Submit</button></div>
  </div>`;
}
