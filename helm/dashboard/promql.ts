// The metric names a PromQL expression (or a Grafana variable query such as
// `label_values(metric{…}, label)`) reads, so tests can check them against a scraped /metrics.
// A small tokenizer, not a parser: it skips strings, label matchers, range and subquery brackets
// with their durations, numbers, Grafana variables, function names, aggregation operators, keywords
// and the label lists after by/without/on/ignoring/group_left/group_right. Whatever identifier is
// left is a metric name; `{__name__="x"}` and `{__name__=~"x|y"}` contribute their names too.

/** PromQL words that are never metric names where they stand (operators, modifiers, literals). */
const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan']);
/** Keywords followed by a parenthesised list of label names. */
const LABEL_LIST_KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
/** Aggregation operators: they may be followed by `by (…)` before their parentheses. */
const AGGREGATIONS = new Set([
  'sum',
  'min',
  'max',
  'avg',
  'group',
  'stddev',
  'stdvar',
  'count',
  'count_values',
  'bottomk',
  'topk',
  'quantile',
  'limitk',
  'limit_ratio',
]);
/** Grafana's Prometheus variable-query functions whose arguments are not all PromQL. */
const GRAFANA_LABEL_FUNCTIONS = new Set(['label_values', 'label_names']);

const IDENT_START = /[A-Za-z_:]/;
const IDENT = /[A-Za-z0-9_:]/;

export class PromqlScanError extends Error {
  override name = 'PromqlScanError';
}

/** Index just past the string literal that starts at `i` (', " or `; backslash escapes except in `). */
function skipString(s: string, i: number): number {
  const quote = s[i];
  let j = i + 1;
  while (j < s.length && s[j] !== quote) j += quote !== '`' && s[j] === '\\' ? 2 : 1;
  if (j >= s.length) throw new PromqlScanError(`unterminated string at ${i} in: ${s}`);
  return j + 1;
}

/** Index of the bracket that closes the one at `i`, skipping strings and nested brackets. */
function closing(s: string, i: number): number {
  const open = s[i] as string;
  const close = ({ '(': ')', '[': ']', '{': '}' } as Record<string, string>)[open];
  let depth = 0;
  let j = i;
  while (j < s.length) {
    const c = s[j] as string;
    if (c === '"' || c === "'" || c === '`') {
      j = skipString(s, j);
      continue;
    }
    if (c === open) depth++;
    else if (c === close && --depth === 0) return j;
    j++;
  }
  throw new PromqlScanError(`unbalanced ${open} at ${i} in: ${s}`);
}

function skipSpace(s: string, i: number): number {
  let j = i;
  for (;;) {
    while (j < s.length && /\s/.test(s[j] as string)) j++;
    if (s[j] !== '#') return j;
    while (j < s.length && s[j] !== '\n') j++;
  }
}

function readIdent(s: string, i: number): number {
  let j = i;
  while (j < s.length && IDENT.test(s[j] as string)) j++;
  return j;
}

/** Splits `s` at top-level commas (not inside brackets or strings). */
function splitArgs(s: string): string[] {
  const out: string[] = [];
  let start = 0;
  let j = 0;
  while (j < s.length) {
    const c = s[j] as string;
    if (c === '"' || c === "'" || c === '`') j = skipString(s, j);
    else if (c === '(' || c === '[' || c === '{') j = closing(s, j) + 1;
    else {
      if (c === ',') {
        out.push(s.slice(start, j));
        start = j + 1;
      }
      j++;
    }
  }
  out.push(s.slice(start));
  return out;
}

/** `__name__` matchers in a `{…}` selector body: equality gives one name, a plain `a|b` regex several. */
function namesInMatchers(body: string): string[] {
  const out: string[] = [];
  for (const m of body.matchAll(/__name__\s*(=~|=)\s*("((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'|`([^`]*)`)/g)) {
    const value = m[3] ?? m[4] ?? m[5] ?? '';
    if (m[1] === '=') out.push(value);
    else if (/^[A-Za-z_:][A-Za-z0-9_:]*(\|[A-Za-z_:][A-Za-z0-9_:]*)*$/.test(value))
      out.push(...value.split('|'));
    else throw new PromqlScanError(`__name__=~"${value}" is not a plain alternation of names; list them`);
  }
  return out;
}

/**
 * Metric names read by a PromQL expression or a Grafana Prometheus variable query, in order of first
 * appearance, without duplicates. Throws PromqlScanError on unbalanced brackets or strings.
 */
export function metricNames(expr: string): string[] {
  const found: string[] = [];
  scan(expr, found);
  return [...new Set(found)];
}

function scan(s: string, out: string[]): void {
  let i = 0;
  let depth = 0;
  while (i < s.length) {
    i = skipSpace(s, i);
    if (i >= s.length) break;
    const c = s[i] as string;
    if (c === '"' || c === "'" || c === '`') {
      i = skipString(s, i);
    } else if (c === '{') {
      const end = closing(s, i);
      out.push(...namesInMatchers(s.slice(i + 1, end)));
      i = end + 1;
    } else if (c === '[') {
      // range or subquery: durations and Grafana interval variables only
      i = closing(s, i) + 1;
    } else if (c === '$') {
      // Grafana variable: $name, ${name} or ${name:format}
      i = s[i + 1] === '{' ? closing(s, i + 1) + 1 : readIdent(s, i + 1);
    } else if (/[0-9.]/.test(c)) {
      // number or duration (1e6, 0x1F, 1.5, 5m, 1h30m); an exponent may carry a sign
      let j = i + 1;
      while (j < s.length) {
        const d = s[j] as string;
        if (/[A-Za-z0-9_.]/.test(d)) j++;
        else if ((d === '+' || d === '-') && /[eE]/.test(s[j - 1] as string) && !/^0x/i.test(s.slice(i, j)))
          j++;
        else break;
      }
      i = j;
    } else if (IDENT_START.test(c)) {
      const end = readIdent(s, i);
      const word = s.slice(i, end);
      const next = skipSpace(s, end);
      const lower = word.toLowerCase();
      if (LABEL_LIST_KEYWORDS.has(lower)) {
        i = s[next] === '(' ? closing(s, next) + 1 : end;
      } else if (GRAFANA_LABEL_FUNCTIONS.has(word) && s[next] === '(') {
        // label_values(label) | label_values(query, label) | label_names() | label_names(query)
        const close = closing(s, next);
        const args = splitArgs(s.slice(next + 1, close));
        if (word === 'label_values' ? args.length === 2 : args.length === 1) scan(args[0] ?? '', out);
        i = close + 1;
      } else if (
        KEYWORDS.has(lower) ||
        s[next] === '(' ||
        (AGGREGATIONS.has(word) && /^(by|without)\b/i.test(s.slice(next)))
      ) {
        i = end;
      } else {
        out.push(word);
        i = end;
      }
    } else {
      if (c === '(') depth++;
      else if (c === ')' && --depth < 0) throw new PromqlScanError(`unbalanced ) at ${i} in: ${s}`);
      else if (c === ']' || c === '}') throw new PromqlScanError(`unbalanced ${c} at ${i} in: ${s}`);
      i++;
    }
  }
  if (depth !== 0) throw new PromqlScanError(`unbalanced ( in: ${s}`);
}
