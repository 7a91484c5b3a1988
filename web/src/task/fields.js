// Form fields for every type the engine supports: text (single- and multi-line), number with its mask
// (currency formatted while typing), date, checkbox, dropdown, multi-select. Each has its label, a required
// mark, and the server's error for it next to it.
import { html, useState, useRef, useLayoutEffect } from "../lib.js";

// How many decimals a mask allows, as the engine reads it: currency:EUR → 2, integer → 0, decimal:3 → 3.
export function maskDecimals(mask) {
  if (!mask) return null;
  const [kind, argument] = mask.split(":");
  if (kind === "decimal" && /^\d+$/.test(argument ?? "")) return Number(argument);
  return { currency: 2, integer: 0 }[kind] ?? null;
}

function currencySymbol(mask) {
  const [kind, code] = (mask ?? "").split(":");
  if (kind !== "currency" || !code) return null;
  try {
    const parts = new Intl.NumberFormat("en", { style: "currency", currency: code }).formatToParts(0);
    return parts.find((p) => p.type === "currency")?.value ?? code;
  } catch {
    return code;
  }
}

const group = (digits) => digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");

// The typed text cleaned to the mask and grouped: "1234.567" → "1,234.56" for two decimals.
export function formatTyped(text, decimals) {
  const negative = text.trim().startsWith("-");
  let [whole, ...rest] = text.replace(/[^\d.]/g, "").split(".");
  let fraction = rest.join("");
  whole = whole.replace(/^0+(?=\d)/, "");
  if (decimals === 0) fraction = null;
  else if (decimals != null && fraction != null) fraction = fraction.slice(0, decimals);
  const hasPoint = decimals !== 0 && text.includes(".");
  const shown = (negative ? "-" : "") + group(whole) + (hasPoint ? "." + (fraction ?? "") : "");
  const plain = (negative ? "-" : "") + (whole || (hasPoint ? "0" : "")) + (hasPoint && fraction ? "." + fraction : "");
  const value = plain === "" || plain === "-" ? null : Number(plain);
  return { shown, value: Number.isFinite(value) ? value : null };
}

export function formatNumber(value, decimals) {
  if (value == null) return "";
  const fixed = decimals != null ? Number(value).toFixed(decimals) : String(value);
  const [whole, fraction] = fixed.split(".");
  const sign = whole.startsWith("-") ? "-" : "";
  return sign + group(whole.replace("-", "")) + (fraction != null ? "." + fraction : "");
}

function NumberInput({ id, field, value, onChange, describedBy, invalid }) {
  const decimals = maskDecimals(field.mask);
  const [text, setText] = useState(formatNumber(value, decimals));
  const input = useRef(null);
  const caret = useRef(null);
  useLayoutEffect(() => {
    if (caret.current == null || !input.current) return;
    // Keep the caret after the same number of digits it was after before grouping moved them.
    let digits = caret.current;
    let position = 0;
    while (position < text.length && digits > 0) {
      if (/[\d.-]/.test(text[position])) digits--;
      position++;
    }
    input.current.setSelectionRange(position, position);
    caret.current = null;
  }, [text]);
  const symbol = currencySymbol(field.mask);
  return html`<div class=${symbol ? "with-prefix" : ""}>
    ${symbol && html`<span class="prefix" aria-hidden="true">${symbol}</span>`}
    <input id=${id} ref=${input} type="text" inputmode=${decimals === 0 ? "numeric" : "decimal"} autocomplete="off"
      value=${text} aria-required=${field.required ? "true" : "false"} aria-invalid=${invalid ? "true" : "false"}
      aria-describedby=${describedBy}
      onInput=${(e) => {
        const before = e.target.value.slice(0, e.target.selectionStart ?? e.target.value.length);
        caret.current = before.replace(/[^\d.-]/g, "").length;
        const { shown, value: parsed } = formatTyped(e.target.value, decimals);
        setText(shown);
        onChange(parsed);
      }}
      onBlur=${() => value != null && setText(formatNumber(value, decimals))} />
  </div>`;
}

export function Field({ field, value, onChange, error, disabled, prefix = "f" }) {
  const id = `${prefix}-${field.key}`;
  const errorId = error ? `${id}-error` : undefined;
  const required = field.required ? html`<span class="required" aria-hidden="true"> *</span>` : null;
  const common = {
    id, disabled, "aria-required": field.required ? "true" : "false", "aria-invalid": error ? "true" : "false",
    "aria-describedby": errorId,
  };
  let control;
  if (field.type === "checkbox") {
    return html`<div class=${`field field-checkbox${error ? " has-error" : ""}`} data-field=${field.key}>
      <input type="checkbox" ...${common} checked=${!!value} onChange=${(e) => onChange(e.target.checked)} />
      <label for=${id}>${field.label}${required}</label>
      ${error && html`<p class="field-error" id=${errorId}>${error}</p>`}
    </div>`;
  }
  if (field.type === "multiselect") {
    const chosen = Array.isArray(value) ? value : [];
    return html`<fieldset class=${`field field-multi${error ? " has-error" : ""}`} data-field=${field.key}
        aria-describedby=${errorId} aria-invalid=${error ? "true" : "false"}>
      <legend>${field.label}${required}</legend>
      ${(field.options ?? []).map(
        (option) => html`<label class="option" key=${option}>
          <input type="checkbox" disabled=${disabled} checked=${chosen.includes(option)}
            onChange=${(e) => onChange(e.target.checked ? [...chosen, option] : chosen.filter((o) => o !== option))} />
          ${option}</label>`,
      )}
      ${error && html`<p class="field-error" id=${errorId}>${error}</p>`}
    </fieldset>`;
  }
  if (field.type === "number") {
    control = html`<${NumberInput} id=${id} field=${field} value=${value} onChange=${onChange} describedBy=${errorId} invalid=${!!error} />`;
  } else if (field.type === "date") {
    control = html`<input type="date" ...${common} value=${value ?? ""} onInput=${(e) => onChange(e.target.value || null)} />`;
  } else if (field.type === "dropdown") {
    control = html`<select ...${common} value=${value ?? ""} onChange=${(e) => onChange(e.target.value || null)}>
      <option value="">Choose…</option>
      ${(field.options ?? []).map((o) => html`<option value=${o} key=${o}>${o}</option>`)}
    </select>`;
  } else if (field.multiline) {
    control = html`<textarea ...${common} rows="4" value=${value ?? ""} onInput=${(e) => onChange(e.target.value)}></textarea>`;
  } else {
    control = html`<input type="text" ...${common} value=${value ?? ""} onInput=${(e) => onChange(e.target.value)} />`;
  }
  return html`<div class=${`field${error ? " has-error" : ""}`} data-field=${field.key}>
    <label for=${id}>${field.label}${required}</label>
    ${control}
    ${error && html`<p class="field-error" id=${errorId}>${error}</p>`}
  </div>`;
}

// The server's ValidationFailed as {fieldKey: message}, plus what names no field of the form.
export function fieldErrors(result, fields, prefix = "values.") {
  const byKey = {};
  const other = [];
  const keys = new Set((fields ?? []).map((f) => f.key));
  for (const e of result.fieldErrors ?? []) {
    const key = e.field.startsWith(prefix) ? e.field.slice(prefix.length) : e.field;
    if (keys.has(key)) byKey[key] = e.message;
    else other.push(`${e.field}: ${e.message}`);
  }
  return { byKey, other };
}

export function cleanValues(fields, values) {
  const out = {};
  for (const f of fields ?? []) {
    const v = values[f.key];
    if (v === undefined || v === null || v === "" || (Array.isArray(v) && !v.length)) continue;
    out[f.key] = v;
  }
  return out;
}
