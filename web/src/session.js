// The signed-in user's bearer token lives in sessionStorage (one tab's life); signing out clears it.
import { store } from "./lib.js";

const KEY = "stepwise.token";

export const session = store({ token: sessionStorage.getItem(KEY), me: null, message: null });

export function token() {
  return session.get().token;
}

export function signIn(newToken, me) {
  sessionStorage.setItem(KEY, newToken);
  session.set({ token: newToken, me, message: null });
}

export function setMe(me) {
  session.set({ ...session.get(), me });
}

// ``message`` is shown on the sign-in screen: why the user is there again (an expired or refused token).
export function signOut(message = null) {
  sessionStorage.removeItem(KEY);
  session.set({ token: null, me: null, message });
}
