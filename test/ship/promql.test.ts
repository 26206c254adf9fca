// The PromQL metric-name extractor (helm/dashboard/promql.ts) on tricky expressions, and the
// exposition reader the scrape test uses: a wrong extractor would let a dashboard query on a metric
// that does not exist pass unnoticed, or flag label names and functions as metrics.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { metricNames, PromqlScanError } from '../../helm/dashboard/promql.ts';
import { familyOf, parseExposition, unionOf } from './exposition.ts';

describe('metricNames', () => {
  const cases: [string, string[]][] = [
    ['up', ['up']],
    ['tilestream_jobs{namespace=~"$namespace", phase!="Failed"}', ['tilestream_jobs']],
    // label values that look like metrics, escaped quotes, single quotes and backticks
    ['a_total{x="b_total", y=\'c_total\', z=`d_total`, w="e\\"f_total"}', ['a_total']],
    ['sum by (namespace, job) (rate(px_total{job=~"$job"}[$__rate_interval])) / 1e6', ['px_total']],
    ['sum(rate(x_total[5m])) by (le) * 1.5e-3', ['x_total']],
    ['sum without (instance, pod) (y)', ['y']],
    [
      'histogram_quantile(0.99, sum by (le, controller) (rate(rt_seconds_bucket{controller="c"}[5m:30s])))',
      ['rt_seconds_bucket'],
    ],
    ['a / on (namespace, job) group_left (gpu_class) b', ['a', 'b']],
    ['a * ignoring(mode) group_right b', ['a', 'b']],
    ['rate(a_total[1h30m] offset 1d) > bool 0', ['a_total']],
    ['a @ start() - a offset -5m', ['a']],
    ['(changes(p[30m]) == 0) and (p < 1) or q unless r', ['p', 'q', 'r']],
    ['time() - (ckpt_seconds{job=~"$job"} > 0)', ['ckpt_seconds']],
    ['count_values("phase_total", x) + topk(5, y) + quantile(0.9, z)', ['x', 'y', 'z']],
    ['max by(namespace)(m) + sum(n) without(pod)', ['m', 'n']],
    ['{__name__="by_name"} + {__name__=~"alt_a|alt_b", job="x"}', ['by_name', 'alt_a', 'alt_b']],
    ['x:recorded:rate5m + 0x1F + Inf - NaN', ['x:recorded:rate5m']],
    ['# a comment naming not_a_metric\nreal_metric', ['real_metric']],
    ['absent(up{job="ts-metrics", namespace="ns"} == 1)', ['up']],
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a Grafana ${variable}, not JS
    ['increase(r_total{namespace=~"$namespace"}[$__range]) + ${threshold} + $other', ['r_total']],
    ['a + a', ['a']],
    // Grafana variable queries
    ['label_values(tilestream_jobs, namespace)', ['tilestream_jobs']],
    ['label_values(m{namespace=~"$namespace"}, job)', ['m']],
    ['label_values(namespace)', []],
    ['label_names(m2)', ['m2']],
    [
      'label_values({__name__=~"t_pixels|trainer_progress_ratio", namespace=~"$namespace"}, job)',
      ['t_pixels', 'trainer_progress_ratio'],
    ],
  ];
  for (const [expr, names] of cases) {
    it(`reads ${JSON.stringify(names)} from ${JSON.stringify(expr)}`, () => {
      assert.deepEqual(metricNames(expr), names);
    });
  }

  it('refuses unbalanced brackets, unterminated strings and a __name__ regex it cannot list', () => {
    assert.throws(() => metricNames('sum(rate(x[5m])'), PromqlScanError);
    assert.throws(() => metricNames('x{a="b}'), PromqlScanError);
    assert.throws(() => metricNames('{__name__=~"tilestream_.*"}'), /not a plain alternation/);
  });

  it('never reads a name out of a string or a label matcher, whatever it holds', () => {
    const name = fc.stringMatching(/^[a-z_][a-z0-9_]{0,12}$/);
    fc.assert(
      fc.property(name, name, fc.string(), (metric, label, value) => {
        const quoted = JSON.stringify(value);
        const expr = `sum by (${label}) (rate(${metric}{${label}=${quoted}}[5m])) > ${quoted.length}`;
        const keyword = ['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or'];
        fc.pre(![...keyword, 'unless', 'bool', 'offset', 'inf', 'nan'].includes(metric));
        assert.deepEqual(metricNames(expr), [metric]);
      }),
    );
  });
});

describe('exposition reader', () => {
  const text = [
    '# HELP h_seconds A histogram.',
    '# TYPE h_seconds histogram',
    'h_seconds_bucket{le="1"} 0',
    'h_seconds_bucket{le="+Inf"} 0',
    'h_seconds_sum 0',
    'h_seconds_count 0',
    '# HELP s A summary.',
    '# TYPE s summary',
    '# HELP c_total A counter without samples yet.',
    '# TYPE c_total counter',
    '# HELP g A gauge.',
    '# TYPE g gauge',
    'g{namespace="a",job="b"} 1',
    '',
  ].join('\n');

  it('knows declared families, their histogram series and the sample names', () => {
    const e = parseExposition(text);
    assert.equal(familyOf(e, 'h_seconds_bucket'), 'h_seconds');
    assert.equal(familyOf(e, 'h_seconds_count'), 'h_seconds');
    assert.equal(familyOf(e, 'c_total'), 'c_total');
    assert.equal(familyOf(e, 's_sum'), 's');
    assert.equal(familyOf(e, 's_bucket'), undefined, 'a summary has no buckets');
    assert.equal(familyOf(e, 'g_count'), undefined, 'a gauge has no _count series');
    assert.equal(familyOf(e, 'missing'), undefined);
    assert.deepEqual([...e.samples].sort(), ['g', 'h_seconds_bucket', 'h_seconds_count', 'h_seconds_sum']);
    const both = unionOf(e, parseExposition('# TYPE other gauge\nother 2\n'));
    assert.equal(familyOf(both, 'other'), 'other');
    assert.equal(familyOf(both, 'g'), 'g');
  });
});
