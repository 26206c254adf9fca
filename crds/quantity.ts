// Kubernetes resource quantities ('16Gi', '40960Mi', '1.5G', '500m', '1e9'), parsed to a number of
// base units (bytes for memory, cores for CPU). Grammar from k8s.io/apimachinery resource.Quantity:
//   quantity ::= sign? number suffix?      number ::= digits | digits '.' digits? | '.' digits
//   suffix   ::= Ki|Mi|Gi|Ti|Pi|Ei | n|u|m|k|M|G|T|P|E | (e|E) sign? digits

/** Unsigned quantity strings, as the CRD accepts them (the schema's `pattern`); RE2- and ECMAScript-compatible. */
export const QUANTITY_PATTERN =
  '^\\+?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE][-+]?[0-9]+))?$';

const GRAMMAR =
  /^([+-]?)((?:[0-9]+(?:\.[0-9]*)?)|(?:\.[0-9]+))(?:(Ki|Mi|Gi|Ti|Pi|Ei)|([numkMGTPE])|[eE]([-+]?[0-9]+))?$/;
const BINARY_POWER: Record<string, number> = { Ki: 10, Mi: 20, Gi: 30, Ti: 40, Pi: 50, Ei: 60 };
const DECIMAL_EXPONENT: Record<string, number> = {
  n: -9,
  u: -6,
  m: -3,
  k: 3,
  M: 6,
  G: 9,
  T: 12,
  P: 15,
  E: 18,
};

export class QuantityError extends Error {
  override name = 'QuantityError';
}

/**
 * The value of a Kubernetes quantity in base units: `parseQuantity('16Gi')` is 17179869184 (bytes),
 * `parseQuantity('500m')` is 0.5 (cores). A number is taken as already in base units.
 * Throws QuantityError naming the string and showing valid forms.
 */
export function parseQuantity(q: string | number): number {
  if (typeof q === 'number') {
    if (!Number.isFinite(q)) throw new QuantityError(`${q} is not a quantity: expected a finite number`);
    return q;
  }
  const m = GRAMMAR.exec(q);
  if (m === null) {
    throw new QuantityError(
      `'${q}' is not a Kubernetes quantity: expected a number with an optional suffix ` +
        `(Ki Mi Gi Ti Pi Ei, n u m k M G T P E, or an exponent e<n>), e.g. '16Gi', '40960Mi', '1.5G', '500m'` +
        (/^[0-9.]+\s*[KMGTPE]?B$/i.test(q) || /^[0-9.]+\s+\S+$/.test(q)
          ? `; note there is no 'B' and no space ('16GB' is written '16G', '16 Gi' is written '16Gi')`
          : ''),
    );
  }
  const [, sign = '', digits = '', binary, decimal, exponent] = m;
  let value: number;
  if (binary !== undefined) value = Number(digits) * 2 ** (BINARY_POWER[binary] ?? 0);
  else {
    // Building the decimal string lets Number() round once, so '1.1G' is exactly 1100000000.
    const exp = decimal !== undefined ? (DECIMAL_EXPONENT[decimal] ?? 0) : Number(exponent ?? 0);
    value = Number(`${digits}e${exp}`);
  }
  if (!Number.isFinite(value)) throw new QuantityError(`'${q}' is too large to represent`);
  return sign === '-' ? -value : value;
}
