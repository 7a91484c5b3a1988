// The first screen's reads, sent while the rest of the app is still loading.
//
// index.html loads this module on its own (`async`, ahead of the app), so its requests leave as soon as the
// page is parsed, while the browser still reads, compiles and runs the app's two dozen modules — about as
// long as the reads take. When the app then asks the same question (the same document and variables) it
// gets this answer instead of asking again: through api.js's `gql`, or, when the answer is in already, at
// once in the page's first render (`answered`), with no "Loading…" frame and no second round trip. Each
// answer is taken once, and only for the address and the token the page was opened with (`forget` drops
// them when either changes): a later read always asks anew. Answers are read as api.js reads any other.
//
// It imports nothing (a module it imported would be waited for), so the first screen's documents live here
// and queries.js passes them on.

export const METRICS = "metrics { total active completed blocked }";

// A step page's rows: the step and instance are the page's own, read once rather than per row.
export const STEP_ROW = `
fragment StepRow on Task {
  id kind type name title description status displayStatus priority revision
  assignedRole assignedGroup createdAt updatedAt dueAt completedAt
  assignee { id name }
}`;

// The step page's read as the page opens: "Assigned to me" off, "Show completed tasks" on.
export const stepVariables = (id, mine = false, completed = true) => ({ id, mine, completed });

export const STEP = `
query Step($id: ID!, $mine: Boolean!, $completed: Boolean!) {
  stepInstance(id: $id) {
    id key title milestoneKey ${METRICS}
    workflowInstance { id definitionKey }
    tasks(assignedToMe: $mine, showCompleted: $completed, first: 200) { edges { node { ...StepRow } } }
  }
}
${STEP_ROW}`;

export const ME = `query Me { me { id name roles groups } taskEventCursor }`;

export const TOKEN_KEY = "stepwise.token";

// request key → { answer: Promise<Answer>, settled: Answer | null }, an Answer being
// { status, body } (body null when it was not JSON) or { unreachable: true }.
const started = new Map();

function key(query, variables) {
  return query + JSON.stringify(variables, Object.keys(variables).sort());
}

async function ask(query, variables, bearer) {
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json", authorization: `Bearer ${bearer}` },
      body: JSON.stringify({ query, variables }),
    });
  } catch {
    return { unreachable: true };
  }
  try {
    return { status: response.status, body: await response.json() };
  } catch {
    return { status: response.status, body: null };
  }
}

function send(query, variables, bearer) {
  const entry = { settled: null };
  entry.answer = ask(query, variables, bearer).then((answer) => (entry.settled = answer));
  started.set(key(query, variables), entry);
}

// The answer on its way to this question (a Promise of an Answer), or null: ask the server.
export function take(query, variables) {
  const k = key(query, variables);
  const entry = started.get(k);
  started.delete(k);
  return entry?.answer ?? null;
}

// The data of this question's answer if it is in already and is a success, else undefined (an answer still
// on its way, or a failure, is left for `take`, whose caller reports it).
export function answered(query, variables) {
  const k = key(query, variables);
  const body = started.get(k)?.settled?.body;
  if (!body?.data || body.errors?.length) return undefined;
  started.delete(k);
  return body.data;
}

export function forget() {
  started.clear();
}

const bearer = sessionStorage.getItem(TOKEN_KEY);
const step = bearer && /^\/app\/steps\/([^/]+)\/?$/.exec(location.pathname); // as main.js routes it
// Whether a page was read before the live cursor was known (it is read again once the stream is up).
export const pageReadEarly = !!step;
if (bearer) {
  // The page's own read first: it is what the first paint waits for.
  if (step) send(STEP, stepVariables(decodeURIComponent(step[1])), bearer);
  send(ME, {}, bearer);
}
