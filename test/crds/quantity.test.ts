import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseQuantity, QUANTITY_PATTERN, QuantityError } from '../../crds/quantity.ts';

describe('parseQuantity', () => {
  const table: [string | number, number][] = [
    ['16Gi', 16 * 2 ** 30],
    ['40960Mi', 40960 * 2 ** 20],
    ['1.5G', 1.5e9],
    ['1.1G', 1_100_000_000],
    ['500m', 0.5],
    ['2', 2],
    ['1e9', 1e9],
    ['1E3', 1000],
    ['12e-3', 0.012],
    ['.5Ki', 512],
    ['5.', 5],
    ['+3k', 3000],
    ['-2Gi', -2 * 2 ** 30],
    ['100n', 1e-7],
    ['7u', 7e-6],
    ['1Ti', 2 ** 40],
    ['2Pi', 2 * 2 ** 50],
    ['1Ei', 2 ** 60],
    ['3E', 3e18],
    [17179869184, 17179869184],
  ];
  for (const [q, want] of table) {
    it(`${JSON.stringify(q)} = ${want}`, () => assert.equal(parseQuantity(q), want));
  }

  const bad: [string, RegExp][] = [
    ['16GB', /'16GB' is not a Kubernetes quantity.*'16GB' is written '16G'/],
    ['16 Gi', /no space/],
    ['16gi', /not a Kubernetes quantity/],
    ['Gi', /not a Kubernetes quantity/],
    ['', /not a Kubernetes quantity/],
    ['1.2.3', /not a Kubernetes quantity/],
    ['1Ki5', /not a Kubernetes quantity/],
    ['0x10', /not a Kubernetes quantity/],
    ['1e', /not a Kubernetes quantity/],
    ['1e999', /too large/],
  ];
  for (const [q, pattern] of bad) {
    it(`refuses ${JSON.stringify(q)} with a clear message`, () => {
      assert.throws(
        () => parseQuantity(q),
        (e: unknown) => e instanceof QuantityError && pattern.test(e.message),
      );
    });
  }

  it('refuses non-finite numbers', () => {
    assert.throws(() => parseQuantity(Number.NaN), QuantityError);
    assert.throws(() => parseQuantity(Number.POSITIVE_INFINITY), QuantityError);
  });

  it('scales binary suffixes by powers of 1024 and decimal ones by powers of 1000', () => {
    const binary = ['Ki', 'Mi', 'Gi', 'Ti'] as const;
    const decimal = ['k', 'M', 'G', 'T'] as const;
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 20 }), fc.integer({ min: 0, max: 3 }), (n, i) => {
        assert.equal(parseQuantity(`${n}${binary[i]}`), n * 1024 ** (i + 1));
        assert.equal(parseQuantity(`${n}${decimal[i]}`), n * 1000 ** (i + 1));
        assert.equal(parseQuantity(`${n}`), n);
      }),
    );
  });
});

describe('QUANTITY_PATTERN (what the CRD accepts as a quantity string)', () => {
  const pattern = new RegExp(QUANTITY_PATTERN, 'u');

  it('accepts exactly the well-formed quantities without a minus sign', () => {
    const pieces = fc.constantFrom(
      '',
      '0',
      '1',
      '16',
      '.',
      '.5',
      '1.',
      '+',
      '-',
      'e',
      'E',
      'Ki',
      'Gi',
      'm',
      'k',
      'G',
      'B',
      ' ',
      'x',
      '3',
    );
    fc.assert(
      fc.property(
        fc.array(pieces, { maxLength: 5 }).map((p) => p.join('')),
        (q) => {
          let parses = true;
          try {
            parseQuantity(q);
          } catch (e) {
            // '1e1616' is a quantity by grammar, only too large for a double: the pattern rightly accepts it.
            parses = /too large/.test((e as Error).message);
          }
          assert.equal(pattern.test(q), parses && !q.startsWith('-'), JSON.stringify(q));
        },
      ),
      { numRuns: 2000 },
    );
  });
});
