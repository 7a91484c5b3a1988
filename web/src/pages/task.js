// /app/tasks/ID: a link to one task opens it on its step page.
import { html, useEffect, useState } from "../lib.js";
import { gql } from "../api.js";
import { navigate } from "../router.js";
import { Loading, NotFound, Failure } from "../ui.js";

export function TaskRedirect({ id }) {
  const [state, setState] = useState("loading");
  const [error, setError] = useState(null);
  useEffect(() => {
    gql("query($id: ID!) { task(id: $id) { id step { id } } }", { id })
      .then(({ task }) => {
        if (!task) setState("missing");
        else navigate(`/app/steps/${task.step.id}?task=${task.id}`, { replace: true });
      })
      .catch((e) => setError(e));
  }, [id]);
  if (error) return html`<${Failure} error=${error} />`;
  if (state === "missing") return html`<${NotFound} what="task" />`;
  return html`<${Loading} what="Opening the task" />`;
}
