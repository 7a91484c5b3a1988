// Start a workflow: the definitions the viewer may start, with the instance's input as a JSON object.
// /app/start/KEY (a link to start one workflow) opens that one; a definition the viewer may not start says so
// (the forbidden screen), one that does not exist says that.
import { html, useEffect, useState } from "../lib.js";
import { gql } from "../api.js";
import { DEFINITIONS, START } from "../queries.js";
import { navigate } from "../router.js";
import { Loading, Failure, Alert, Empty, Forbidden, NotFound } from "../ui.js";

// A starting point for the input: the names the definition's templates read at the top level.
function inputTemplate(definition) {
  const text = JSON.stringify(definition.definition ?? {});
  const names = new Set();
  for (const [, name] of text.matchAll(/\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}/g)) names.add(name);
  const stored = new Set((definition.definition?.nodes ?? []).map((n) => n.storeAs).filter(Boolean));
  const skip = new Set(["settings", "secrets", "startedBy", ...stored]);
  return JSON.stringify(Object.fromEntries([...names].filter((n) => !skip.has(n)).map((n) => [n, ""])), null, 2);
}

function startRoles(definition) {
  const roles = definition.definition?.startRoles;
  return Array.isArray(roles) ? roles : [];
}

// "the requester role", "the approver or manager role", "the approver, manager or admin role".
export function rolesNeeded(roles) {
  const named = roles.length > 1 ? `${roles.slice(0, -1).join(", ")} or ${roles[roles.length - 1]}` : roles[0];
  return `the ${named} role`;
}

export function StartWorkflow({ only = null }) {
  const [definitions, setDefinitions] = useState(null);
  const [named, setNamed] = useState(undefined); // /app/start/KEY: that definition, null when there is none
  const [error, setError] = useState(null);
  const [key, setKey] = useState("");
  const [input, setInput] = useState("{}");
  const [problem, setProblem] = useState(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    gql(DEFINITIONS)
      .then(({ workflowDefinitions }) => {
        const startable = workflowDefinitions.filter((d) => d.viewerCanStart);
        const wanted = only === null ? null : (workflowDefinitions.find((d) => d.key === only) ?? null);
        setNamed(wanted);
        setDefinitions(startable);
        const first = wanted?.viewerCanStart ? wanted : only === null ? startable[0] : null;
        if (first) {
          setKey(first.key);
          setInput(inputTemplate(first));
        }
      })
      .catch(setError);
  }, [only]);

  const choose = (value) => {
    setKey(value);
    setInput(inputTemplate(definitions.find((d) => d.key === value)));
  };

  const submit = async (e) => {
    e.preventDefault();
    setProblem(null);
    let parsed;
    try {
      parsed = JSON.parse(input || "{}");
    } catch (err) {
      setProblem({ message: `The input is not JSON: ${err.message}`, fields: [] });
      return;
    }
    setBusy(true);
    try {
      const { startWorkflow: result } = await gql(START, { input: { definitionKey: key, input: parsed } });
      if (result.__typename === "StartWorkflowSuccess") navigate(`/app/instances/${result.workflowInstance.id}`);
      else setProblem({ message: result.message, fields: result.fieldErrors ?? [] });
    } catch (err) {
      setProblem({ message: err.message, fields: [] });
    } finally {
      setBusy(false);
    }
  };

  if (error) return html`<${Failure} error=${error} />`;
  if (!definitions) return html`<${Loading} what="Loading workflows" />`;
  if (only !== null && named === null) return html`<${NotFound} what="workflow" />`;
  if (named && !named.viewerCanStart) {
    const roles = startRoles(named);
    return html`<${Forbidden}>You may not start “${named.title}”${roles.length ? `: it needs ${rolesNeeded(roles)}` : ""}.<//>`;
  }
  if (!definitions.length) {
    return html`<${Empty} title="No workflows">There is no workflow you may start.<//>`;
  }
  return html`<section class="page narrow" aria-labelledby="start-title">
    <h1 id="start-title">Start a workflow</h1>
    <form onSubmit=${submit} class="stack">
      <div class="field">
        <label for="definition">Workflow</label>
        <select id="definition" value=${key} onChange=${(e) => choose(e.target.value)}>
          ${definitions.map((d) => html`<option value=${d.key} key=${d.key}>${d.title} (${d.key} v${d.version})</option>`)}
        </select>
      </div>
      <div class="field">
        <label for="input">Input (JSON object)</label>
        <textarea id="input" class="code" rows="8" spellcheck="false" value=${input}
          aria-invalid=${problem ? "true" : "false"} onInput=${(e) => setInput(e.target.value)}></textarea>
      </div>
      ${problem && html`<${Alert}>${problem.message}
        ${problem.fields.length > 0 && html`<ul>${problem.fields.map((f) => html`<li key=${f.field}>${f.field}: ${f.message}</li>`)}</ul>`}<//>`}
      <div class="actions"><button class="button primary" type="submit" disabled=${busy}>Start</button></div>
    </form>
  </section>`;
}
