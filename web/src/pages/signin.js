// Sign-in: in development (STEPWISE_DEV) pick a demo user and the server issues the token; otherwise
// paste a bearer token (e.g. from `stepwise token USER`). Both end in sessionStorage.
import { html, useEffect, useState, useStore } from "../lib.js";
import { gql } from "../api.js";
import { DEV_USERS, DEV_SIGN_IN } from "../queries.js";
import { session, signIn } from "../session.js";
import { Alert } from "../ui.js";

export function SignIn() {
  const { message } = useStore(session);
  const [users, setUsers] = useState(undefined);
  const [pasted, setPasted] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    gql(DEV_USERS)
      .then((data) => setUsers(data.devUsers))
      .catch((e) => {
        setUsers(null);
        setError(e.kind === "network" ? "The server cannot be reached; try again in a moment." : e.message);
      });
  }, []);

  const pick = async (user) => {
    setBusy(true);
    setError(null);
    try {
      const { devSignIn } = await gql(DEV_SIGN_IN, { input: { userId: user.id } });
      if (devSignIn.__typename !== "DevSignInSuccess") setError(devSignIn.message);
      else signIn(devSignIn.token, devSignIn.user);
    } catch (e) {
      setError(e.message);
    } finally {
      setBusy(false);
    }
  };

  const submit = (e) => {
    e.preventDefault();
    const value = pasted.trim().replace(/^Bearer\s+/i, "");
    if (!value) {
      setError("Paste a bearer token first.");
      return;
    }
    signIn(value, null);
  };

  return html`<main class="signin" id="main">
    <h1>Sign in to Stepwise</h1>
    ${message && html`<${Alert} tone="warning">${message}<//>`}
    ${error && html`<${Alert}>${error}<//>`}
    ${users === undefined && html`<p class="muted" role="status">Looking for demo users…</p>`}
    ${users?.length > 0 &&
    html`<section aria-labelledby="dev-users">
      <h2 id="dev-users">Development: sign in as a demo user</h2>
      <ul class="user-list">
        ${users.map(
          (u) => html`<li key=${u.id}><button class="user-choice" disabled=${busy} onClick=${() => pick(u)}>
            <strong>${u.name}</strong>
            <span class="muted">${[...u.roles, ...u.groups.map((g) => `group ${g}`)].join(", ") || "no roles"}</span>
          </button></li>`,
        )}
      </ul>
    </section>`}
    <form class="token-form" onSubmit=${submit}>
      <label for="token">Bearer token</label>
      <textarea id="token" rows="3" value=${pasted} onInput=${(e) => setPasted(e.target.value)}
        placeholder="eyJhbGciOi…" spellcheck="false" autocomplete="off"></textarea>
      <p class="hint">The token is kept in this tab only (sessionStorage) until you sign out.</p>
      <button class="button primary" type="submit">Sign in with token</button>
    </form>
  </main>`;
}
