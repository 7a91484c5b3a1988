// The signed-in user's bearer token lives in sessionStorage (one tab's life); signing out clears it.
import { store } from "./lib.js";
import { TOKEN_KEY as KEY } from "./first-read.js";

const ME = "stepwise.me"; // who the token was for when last checked: the first screen need not wait to ask

// Who the token says it is for (its `sub`), until the server has said who that is: enough to show the first
// page at once. The server still checks the token on every request; this decides nothing.
function claimed(token) {
  try {
    const payload = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return typeof payload.sub === "string" ? { id: payload.sub, name: payload.sub, roles: [], groups: [] } : null;
  } catch {
    return null;
  }
}

function remembered(token) {
  if (!token) return null;
  try {
    return JSON.parse(sessionStorage.getItem(ME)) ?? claimed(token);
  } catch {
    return claimed(token);
  }
}

const initial = sessionStorage.getItem(KEY);
export const session = store({ token: initial, me: remembered(initial), message: null });

export function token() {
  return session.get().token;
}

export function signIn(newToken, me = null) {
  sessionStorage.setItem(KEY, newToken);
  if (me) sessionStorage.setItem(ME, JSON.stringify(me));
  else sessionStorage.removeItem(ME);
  session.set({ token: newToken, me: me ?? claimed(newToken), message: null });
}

export function setMe(me) {
  sessionStorage.setItem(ME, JSON.stringify(me));
  session.set({ ...session.get(), me });
}

// ``message`` is shown on the sign-in screen: why the user is there again (an expired or refused token).
export function signOut(message = null) {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(ME);
  session.set({ token: null, me: null, message });
}
