// Real time over graphql-transport-ws (the graphql-ws client): one connection per signed-in tab.
//
// The app-wide task event stream resumes from the last cursor it received: when the connection drops (the
// server restarted, the network went away) the status turns "reconnecting", and once the connection is back
// the stream is subscribed again with `after` set to that cursor, so every change committed meanwhile is
// replayed in order and nothing is missed. Other subscriptions (a task's discussion) have no cursor; they
// are subscribed again and told to re-read what they show.
//
// The server ends a stream it cannot go on with (the subscriber fell behind, a database error) by sending a
// `next` that carries only `errors`, then `complete` (Strawberry's graphql-transport-ws; see
// tests/server/test_subscriptions.py): never an `error` message. A stream that ends while the connection is
// up is subscribed again from its cursor (or the `resumeAfter` the error names), and every time a stream
// starts, the pages re-read what they show (onResync): whatever the stream may not replay is in that read.
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

// A stream that ended (or failed) while the connection is up starts again, a little later each time it keeps
// failing (a server refusing it must not be asked in a tight loop).
let restarts = 0;
let restartTimer = null;

function resync() {
  for (const listener of [...resyncListeners]) listener();
}

function restartStream() {
  stream = null;
  clearTimeout(restartTimer);
  if (!client || connection.get() !== "live") return; // the connection's own `connected` starts it again
  const wait = Math.min(200 * 2 ** restarts, 5_000);
  restarts += 1;
  restartTimer = setTimeout(() => {
    if (!stream && client && connection.get() === "live") startStream();
  }, wait);
}

function resumeCursor(errors) {
  const resume = Array.isArray(errors) ? errors.find((e) => e?.extensions?.resumeAfter)?.extensions.resumeAfter : null;
  if (resume) cursor = resume;
}

// ``reread``: whether the pages re-read once it is subscribed; only the first stream of a connection whose
// pages were read after the cursor (`connect` without ``resync``) has nothing to catch up on.
function startStream(reread = true) {
  // Each stream's callbacks act only while it is the current one: an old stream ending late must not end
  // (or restart) its successor.
  const handle = {};
  const current = () => stream === handle;
  handle.dispose = client.subscribe(
    { query: EVENTS, variables: { after: cursor } },
    {
      next({ data, errors }) {
        if (!current()) return;
        if (errors?.length) resumeCursor(errors);
        const event = data?.taskEvents;
        if (!event) {
          // The stream is ending (`complete` follows, and a restart) or this one event could not be read:
          // either way the pages re-read rather than miss it.
          if (errors?.length) resync();
          return;
        }
        cursor = event.cursor;
        restarts = 0;
        if (errors?.length) {
          // Part of the event could not be read: what it shows may be incomplete, so re-read instead.
          resync();
          return;
        }
        for (const listener of [...eventListeners]) listener(event);
      },
      error(error) {
        if (!current()) return;
        resumeCursor(error);
        restartStream();
      },
      complete() {
        // Not disposed by us (that clears `stream` first): the server ended it.
        if (current()) restartStream();
      },
    },
  );
  stream = handle;
  // Subscribing from the cursor replays what committed after it; a re-read covers what the page read before.
  if (reread) resync();
}

function stopStream() {
  const old = stream;
  stream = null;
  clearTimeout(restartTimer);
  old?.dispose();
}

function subscribeExtra(entry) {
  const handle = {};
  const ended = () => {
    // Ended by the server (not by us, which clears `dispose` first) while the connection is up: again, and
    // the subscriber re-reads what it may have missed meanwhile.
    if (entry.dispose !== handle || !extras.has(entry)) return;
    entry.dispose = null;
    setTimeout(() => {
      if (client && connection.get() === "live" && extras.has(entry) && !entry.dispose) {
        subscribeExtra(entry);
        entry.resumed?.();
      }
    }, 1_000);
  };
  handle.stop = client.subscribe(entry.payload, {
    next: ({ data }) => data && entry.next(data),
    error: ended,
    complete: ended,
  });
  entry.dispose = handle;
}

function stopExtra(entry) {
  const handle = entry.dispose;
  entry.dispose = null;
  handle?.stop();
}

// A subscription kept across reconnects; `resumed` runs after a reconnect (re-read what may have been missed).
export function subscribe(payload, next, resumed) {
  const entry = { payload, next, resumed, dispose: null };
  extras.add(entry);
  if (client && connection.get() === "live") subscribeExtra(entry);
  return () => {
    extras.delete(entry);
    stopExtra(entry);
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
  // The callbacks act for this client only: an earlier one's late `closed` (it was disposed) must not stop
  // this one's streams.
  const mine = () => client === created;
  const created = createClient({
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
        if (!mine()) return;
        const resumed = everConnected;
        everConnected = true;
        connection.set("live");
        restarts = 0;
        if (!stream) startStream(resumed || resyncOnConnect);
        resyncOnConnect = false;
        for (const entry of extras) {
          if (!entry.dispose) subscribeExtra(entry);
          if (resumed) entry.resumed?.();
        }
      },
      closed(event) {
        if (!mine()) return;
        connection.set("reconnecting");
        // Dropped now, so that the retry subscribes afresh from the cursor rather than from the first one.
        stopStream();
        for (const entry of extras) stopExtra(entry);
        // A refused connection may be a token that no longer works: ask over HTTP, which signs out if so.
        if (event?.code === 4403 || event?.code === 4401) gql("query { me { id } }").catch(() => {});
      },
    },
  });
  client = created;
}

export function disconnect() {
  const old = client;
  client = null;
  stream = null;
  clearTimeout(restartTimer);
  for (const entry of extras) entry.dispose = null;
  old?.dispose();
}

session.subscribe(({ token: current }) => {
  if (!current) disconnect();
});
