// The Discussion tab: messages with author and time, oldest first; new ones from anyone arrive live
// (taskMessages), and after a reconnect the list is read again so none is missed.
import { html, useEffect, useRef, useState } from "../lib.js";
import { gql } from "../api.js";
import { TASK_MESSAGES, POST_MESSAGE, MESSAGES } from "../queries.js";
import { subscribe, onTaskEvent } from "../live.js";
import { Alert, Loading, when, debounce } from "../ui.js";

export function Discussion({ taskId, me }) {
  const [messages, setMessages] = useState(null);
  const [body, setBody] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const end = useRef(null);

  const add = (list) =>
    setMessages((current) => {
      const byId = new Map((current ?? []).map((m) => [m.id, m]));
      for (const m of list) byId.set(m.id, m);
      return [...byId.values()].sort((a, b) => a.postedAt.localeCompare(b.postedAt));
    });
  const load = () =>
    gql(TASK_MESSAGES, { id: taskId })
      .then(({ task }) => add(task?.messages ?? []))
      .catch((e) => setError(e.message));

  useEffect(() => {
    load();
    const unsubscribe = subscribe({ query: MESSAGES, variables: { taskId } }, (data) => add([data.taskMessages]), load);
    // The app's event stream resumes from its cursor: a message that commits before this subscription is
    // in place on the server still shows up (read again, merged by id).
    const reread = debounce(load, 150);
    const stop = onTaskEvent((event) => event.kind === "MESSAGE_POSTED" && event.task.id === taskId && reread());
    return () => {
      unsubscribe();
      stop();
      reread.cancel();
    };
  }, [taskId]);
  useEffect(() => end.current?.scrollIntoView?.({ block: "nearest" }), [messages?.length]);

  const post = async (e) => {
    e.preventDefault();
    if (!body.trim()) return;
    setBusy(true);
    setError(null);
    try {
      const { postTaskMessage: result } = await gql(POST_MESSAGE, { input: { taskId, body } });
      if (result.__typename === "TaskMessageSuccess") {
        add([result.posted]);
        setBody("");
      } else setError(result.message);
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  };

  return html`<div class="discussion stack">
    ${messages === null ? html`<${Loading} what="Loading the discussion" />`
      : messages.length === 0 ? html`<p class="muted">No messages yet. Ask a question or add context for the team.</p>`
      : html`<ol class="messages" aria-label="Messages">
          ${messages.map((m) => html`<li key=${m.id} class=${m.author.id === me.id ? "message mine" : "message"} data-testid="message">
            <div class="message-head"><strong>${m.author.name}</strong> <time datetime=${m.postedAt} class="muted">${when(m.postedAt)}</time></div>
            <p>${m.body}</p></li>`)}
        </ol>`}
    <div ref=${end}></div>
    ${error && html`<${Alert}>${error}<//>`}
    <form class="stack" onSubmit=${post}>
      <label for="message-body">Message</label>
      <textarea id="message-body" rows="2" value=${body} onInput=${(e) => setBody(e.target.value)}></textarea>
      <div class="actions"><button class="button primary" type="submit" disabled=${busy || !body.trim()}>Post</button></div>
    </form>
  </div>`;
}
