// Real time over graphql-transport-ws (the graphql-ws client): one connection per signed-in tab.
//
// The app-wide task event stream resumes from the last cursor it received: when the connection drops (the
// server restarted, the network went away) the status turns "reconnecting", and once the connection is back
// the stream is subscribed again with `after` set to that cursor, so every change committed meanwhile is
// replayed in order and nothing is missed. Other subscriptions (a task's discussion) have no cursor; they
// are subscribed again and told to re-read what they show.
import { createClient } from "../vendor/graphql-ws.js";
import { store } from "./lib.js";
import { EVENTS } from "./queries.js";
import { token, session } from "./session.js";
import { gql } from "./api.js";

export const connection = store("connecting"); // "connecting" | "live" | "reconnecting"
const eventListeners = new Set();
const resyncListeners = new Set();
const extras = new Set(); // {payload, next, resumed, dispose}
let client = null;
let cursor = null;
let stream = null;
let resyncOnConnect = false;

// Called once the stream is up when a page may have been read before the cursor was known: it re-reads.
export function onResync(listener) {
  resyncListeners.add(listener);
  return () => resyncListeners.delete(listener);
}

export function onTaskEvent(listener) {
  eventListeners.add(listener);
  return () => eventListeners.delete(listener);
}

function startStream() {
  stream = client.subscribe(
    { query: EVENTS, variables: { after: cursor } },
    {
      next({ data, errors }) {
        if (errors?.length || !data) return;
        const event = data.taskEvents;
        cursor = event.cursor;
        for (const listener of [...eventListeners]) listener(event);
      },
      error(error) {
        // SUBSCRIBER_OVERFLOW says where to resume; anything else resumes from the last cursor received.
        const resume = Array.isArray(error) ? error[0]?.extensions?.resumeAfter : null;
        if (resume) cursor = resume;
        stream = null;
        if (connection.get() === "live") setTimeout(() => !stream && client && startStream(), 200);
      },
      complete() {},
    },
  );
}

function subscribeExtra(entry) {
  entry.dispose = client.subscribe(entry.payload, {
    next: ({ data }) => data && entry.next(data),
    error: () => (entry.dispose = null),
    complete: () => {},
  });
}

// A subscription kept across reconnects; `resumed` runs after a reconnect (re-read what may have been missed).
export function subscribe(payload, next, resumed) {
  const entry = { payload, next, resumed, dispose: null };
  extras.add(entry);
  if (client && connection.get() === "live") subscribeExtra(entry);
  return () => {
    extras.delete(entry);
    entry.dispose?.();
  };
}

// Starts the connection for the signed-in user; `startCursor` from `taskEventCursor`, read before any page.
// ``resync``: the page was read before the cursor (shown from memory at once): re-read once connected.
export function connect(startCursor, { resync = false } = {}) {
  disconnect();
  cursor = startCursor;
  resyncOnConnect = resync;
  let everConnected = false;
  const url = new URL("/graphql", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  connection.set("connecting");
  client = createClient({
    url: url.href,
    lazy: false,
    keepAlive: 5_000,
    retryAttempts: Infinity,
    shouldRetry: () => true,
    retryWait: (retries) => new Promise((resolve) => setTimeout(resolve, Math.min(250 * 2 ** retries, 3_000))),
    connectionParams: () => ({ authorization: `Bearer ${token()}` }),
    onNonLazyError: () => {},
    on: {
      connected() {
        const resumed = everConnected;
        everConnected = true;
        connection.set("live");
        if (!stream) startStream();
        if (resyncOnConnect) {
          resyncOnConnect = false;
          for (const listener of [...resyncListeners]) listener();
        }
        for (const entry of extras) {
          if (!entry.dispose) subscribeExtra(entry);
          if (resumed) entry.resumed?.();
        }
      },
      closed(event) {
        if (!client) return;
        connection.set("reconnecting");
        // Dropped now, so that the retry subscribes afresh from the cursor rather than from the first one.
        stream?.();
        stream = null;
        for (const entry of extras) {
          entry.dispose?.();
          entry.dispose = null;
        }
        // A refused connection may be a token that no longer works: ask over HTTP, which signs out if so.
        if (event?.code === 4403 || event?.code === 4401) gql("query { me { id } }").catch(() => {});
      },
    },
  });
}

export function disconnect() {
  const old = client;
  client = null;
  stream = null;
  for (const entry of extras) entry.dispose = null;
  old?.dispose();
}

session.subscribe(({ token: current }) => {
  if (!current) disconnect();
});
