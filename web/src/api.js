// GraphQL over HTTP: queries and mutations as JSON POSTs, uploads as GraphQL multipart requests.
// Every request carries the session's bearer token; a refused token signs the user out with the reason.
import { token, signOut } from "./session.js";
import { take } from "./first-read.js";

export class ApiError extends Error {
  // kind: "network" (server unreachable or not answering GraphQL), "unauthenticated", "forbidden", "graphql"
  constructor(kind, message, code = null) {
    super(message);
    this.kind = kind;
    this.code = code;
  }
}

function headers() {
  const bearer = token();
  return bearer ? { authorization: `Bearer ${bearer}` } : {};
}

function fail(body, status) {
  const first = body.errors[0];
  const code = first.extensions?.code ?? null;
  if (code === "UNAUTHENTICATED") {
    signOut(`Signed out: ${first.message}`);
    return new ApiError("unauthenticated", first.message, code);
  }
  if (code === "FORBIDDEN") return new ApiError("forbidden", first.message, code);
  if (status === 429) return new ApiError("graphql", "Too many requests; wait a moment and try again.", code);
  return new ApiError("graphql", first.message, code);
}

function read({ status, body }) {
  if (!body) throw new ApiError("network", `The server answered ${status} without a GraphQL response.`);
  if (body.errors?.length) throw fail(body, status);
  return body.data;
}

async function decode(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: read() says so
  }
  return read({ status: response.status, body });
}

// The page's first reads may be on their way already (first-read.js): the same question is not asked twice.
export async function gql(query, variables = {}) {
  const early = take(query, variables);
  if (early) {
    const answer = await early;
    if (answer.unreachable) throw new ApiError("network", "The server cannot be reached.");
    return read(answer);
  }
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json", ...headers() },
      body: JSON.stringify({ query, variables }),
    });
  } catch {
    throw new ApiError("network", "The server cannot be reached.");
  }
  return decode(response);
}

// One multipart request (the GraphQL multipart request spec) with upload progress: onProgress(0..1).
export function upload(query, variables, filesPath, files, onProgress) {
  const form = new FormData();
  const vars = { ...variables, [filesPath]: files.map(() => null) };
  form.append("operations", JSON.stringify({ query, variables: vars }));
  const map = {};
  files.forEach((_, i) => (map[String(i)] = [`variables.${filesPath}.${i}`]));
  form.append("map", JSON.stringify(map));
  files.forEach((file, i) => form.append(String(i), file, file.name));
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/graphql");
    for (const [name, value] of Object.entries(headers())) xhr.setRequestHeader(name, value);
    xhr.setRequestHeader("accept", "application/json");
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress?.(e.loaded / e.total);
    xhr.onerror = () => reject(new ApiError("network", "The server cannot be reached."));
    xhr.onload = () => {
      let body;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        reject(new ApiError("network", `The server answered ${xhr.status} without a GraphQL response.`));
        return;
      }
      if (body.errors?.length) reject(fail(body, xhr.status));
      else resolve(body.data);
    };
    xhr.send(form);
  });
}

// A download needs the bearer token, which a plain link cannot send: fetch it and save the blob.
export async function download(url, filename) {
  const response = await fetch(url, { headers: headers() });
  if (!response.ok) throw new ApiError("graphql", `The download failed (${response.status}).`);
  const href = URL.createObjectURL(await response.blob());
  const a = document.createElement("a");
  a.href = href;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 10_000);
}
