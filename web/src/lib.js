// The one place the vendored libraries are imported: Preact, its hooks, and htm bound to Preact's h.
import { h, render, Fragment, createContext } from "../vendor/preact.module.js";
import {
  useState, useEffect, useRef, useCallback, useMemo, useContext, useLayoutEffect,
} from "../vendor/hooks.module.js";
import htm from "../vendor/htm.module.js";

export const html = htm.bind(h);
export {
  h, render, Fragment, createContext, useState, useEffect, useRef, useCallback, useMemo, useContext,
  useLayoutEffect,
};

// A tiny observable value: components subscribe with useStore.
export function store(initial) {
  let value = initial;
  const listeners = new Set();
  return {
    get: () => value,
    set(next) {
      value = next;
      for (const listener of [...listeners]) listener(value);
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

export function useStore(s) {
  const [value, setValue] = useState(s.get());
  useEffect(() => {
    setValue(s.get());
    return s.subscribe(setValue);
  }, [s]);
  return value;
}
