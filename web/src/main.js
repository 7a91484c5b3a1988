// The application shell: sign-in, the header (navigation, live status, user), the routed page and toasts.
import { html, render, useEffect, useState, useStore } from "./lib.js";
import { session, setMe, signOut } from "./session.js";
import { gql } from "./api.js";
import { ME } from "./queries.js";
import { connect, connection, onTaskEvent } from "./live.js";
import { route, match } from "./router.js";
import { forget as forgetFirstReads, pageReadEarly } from "./first-read.js";
import { Toasts, toast, Loading, Failure, NotFound } from "./ui.js";
import { SignIn } from "./pages/signin.js";
import { Inbox } from "./pages/inbox.js";
import { StartWorkflow } from "./pages/start.js";
import { InstancePage } from "./pages/instance.js";
import { StepPage } from "./pages/step.js";
import { TaskRedirect } from "./pages/task.js";

const VERB = {
  CREATED: "created", UPDATED: "updated", CLAIMED: "claimed", ASSIGNED: "assigned", PROGRESS_SAVED: "saved progress on",
  COMPLETED: "completed", FAILED: "failed", RETRIED: "retried", CANCELLED: "cancelled", EXPIRED: "expired",
  MESSAGE_POSTED: "posted a message on",
};

function LiveStatus() {
  const state = useStore(connection);
  const label = { live: "Live", connecting: "Connecting…", reconnecting: "Reconnecting…" }[state];
  return html`<span class="live live-${state}" role="status" data-testid="live" data-state=${state}>
    <span class="dot" aria-hidden="true"></span>${label}</span>`;
}

function Header({ me }) {
  return html`<header class="top">
    <a class="brand" href="/app/">Stepwise</a>
    <nav aria-label="Main">
      <a href="/app/">Inbox</a>
      <a href="/app/start">Start a workflow</a>
    </nav>
    <div class="who">
      <${LiveStatus} />
      <span class="me" data-testid="me">${me.name}</span>
      <button class="button ghost" onClick=${() => signOut()}>Sign out</button>
    </div>
  </header>`;
}

function Page({ url, me }) {
  const path = url.pathname;
  let params;
  if (match("/app", path)) return html`<${Inbox} me=${me} />`;
  if (match("/app/start", path)) return html`<${StartWorkflow} />`;
  if ((params = match("/app/start/:key", path))) return html`<${StartWorkflow} only=${params.key} />`;
  if ((params = match("/app/instances/:id", path))) return html`<${InstancePage} id=${params.id} me=${me} />`;
  if ((params = match("/app/steps/:id", path))) {
    return html`<${StepPage} id=${params.id} me=${me} taskId=${url.searchParams.get("task")} />`;
  }
  if ((params = match("/app/tasks/:id", path))) return html`<${TaskRedirect} id=${params.id} />`;
  return html`<${NotFound} />`;
}

function SignedIn({ me }) {
  const url = useStore(route);
  useEffect(
    () =>
      onTaskEvent((event) => {
        if (event.actor && event.actor.id !== me.id) {
          toast(`${event.actor.name} ${VERB[event.kind] ?? event.kind.toLowerCase()} “${event.task.title}”`);
        }
      }),
    [me.id],
  );
  return html`<div class="shell">
    <a class="skip" href="#main">Skip to content</a>
    <${Header} me=${me} />
    <main id="main" tabindex="-1"><${Page} url=${url} me=${me} key=${url.pathname} /></main>
    <${Toasts} />
  </div>`;
}

// Checks the token (who it is for) and reads the live cursor, then connects. With the user remembered from
// earlier in this tab, the page shows at once meanwhile; it re-reads when the stream is up (onResync), so
// nothing committed between its first read and the cursor is missed. So does a page whose first read was
// sent with the cursor's (first-read.js).
function useBoot(token) {
  const [error, setError] = useState(null);
  const load = async () => {
    setError(null);
    const readBeforeCursor = !!session.get().me || pageReadEarly;
    try {
      const data = await gql(ME);
      connect(data.taskEventCursor, { resync: readBeforeCursor });
      setMe(data.me);
    } catch (e) {
      if (e.kind !== "unauthenticated") setError(e);
    }
  };
  useEffect(() => {
    if (token) load();
  }, [token]);
  // Shown from memory while the server is away: keep asking, as the live connection would.
  useEffect(() => {
    if (!error || error.kind !== "network" || !session.get().me) return undefined;
    const timer = setTimeout(load, 2_000);
    return () => clearTimeout(timer);
  }, [error]);
  return { error, retry: load };
}

function App() {
  const { token, me } = useStore(session);
  const { error, retry } = useBoot(token);
  if (!token) return html`<${SignIn} /><${Toasts} />`;
  if (!me && error) return html`<main class="boot-failure"><${Failure} error=${error} retry=${retry} /></main>`;
  if (!me) return html`<${Loading} what="Signing in" />`;
  return html`<${SignedIn} me=${me} />`;
}

// The first reads answer for the address and the token the page was opened with, not for the next ones.
route.subscribe(forgetFirstReads);
const openedWith = session.get().token;
session.subscribe(({ token }) => token !== openedWith && forgetFirstReads());

const root = document.getElementById("app");
root.textContent = ""; // the page's "Loading…" placeholder
render(html`<${App} />`, root);
