// Start a workflow: the definitions the viewer may start, with the instance's input as a JSON object.
import { html, useEffect, useState } from "../lib.js";
import { gql } from "../api.js";
import { DEFINITIONS, START } from "../queries.js";
import { navigate } from "../router.js";
import { Loading, Failure, Alert, Empty } from "../ui.js";

// A starting point for the input: the names the definition's templates read at the top level.
function inputTemplate(definition) {
  const text = JSON.stringify(definition.definition ?? {});
  const names = new Set();
  for (const [, name] of text.matchAll(/\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}/g)) names.add(name);
  const stored = new Set((definition.definition?.nodes ?? []).map((n) => n.storeAs).filter(Boolean));
  const skip = new Set(["settings", "secrets", "startedBy", ...stored]);
  return JSON.stringify(Object.fromEntries([...names].filter((n) => !skip.has(n)).map((n) => [n, ""])), null, 2);
}

export function StartWorkflow() {
  const [definitions, setDefinitions] = useState(null);
  const [error, setError] = useState(null);
  const [key, setKey] = useState("");
  const [input, setInput] = useState("{}");
  const [problem, setProblem] = useState(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    gql(DEFINITIONS)
      .then(({ workflowDefinitions }) => {
        setDefinitions(workflowDefinitions);
        if (workflowDefinitions.length) {
          setKey(workflowDefinitions[0].key);
          setInput(inputTemplate(workflowDefinitions[0]));
        }
      })
      .catch(setError);
  }, []);

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
  if (!definitions.length) return html`<${Empty} title="No workflows">No workflow definitions are deployed yet.<//>`;
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
