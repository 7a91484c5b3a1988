// History-API routing under /app/: the server answers the same page for every /app/ path.
import { store } from "./lib.js";

export const route = store(new URL(location.href));

export function navigate(to, { replace = false } = {}) {
  const url = new URL(to, location.href);
  if (url.href === location.href) return;
  history[replace ? "replaceState" : "pushState"](null, "", url.href);
  route.set(url);
}

window.addEventListener("popstate", () => route.set(new URL(location.href)));

document.addEventListener("click", (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest?.("a[href]");
  if (!a || a.target || a.hasAttribute("download") || a.origin !== location.origin) return;
  if (!a.pathname.startsWith("/app/")) return;
  e.preventDefault();
  navigate(a.href);
});

// The path's pattern: returns the named parts, or null.
export function match(pattern, pathname) {
  const names = [];
  const regex = new RegExp(
    "^" + pattern.replace(/:([a-zA-Z]+)/g, (_, name) => (names.push(name), "([^/]+)")) + "/?$",
  );
  const found = regex.exec(pathname);
  if (!found) return null;
  return Object.fromEntries(names.map((n, i) => [n, decodeURIComponent(found[i + 1])]));
}
