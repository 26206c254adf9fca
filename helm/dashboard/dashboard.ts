// The tilestream Grafana dashboard, built with @grafana/grafana-foundation-sdk (never hand-edited
// JSON): memory saved per job, throughput, loss and progress, checkpoint age, tile sizes per GPU
// class, jobs by phase, out-of-memory tile reductions, and the operator's reconcile errors, latency
// and queue depth. Queries name metrics only through metric-names.ts; every panel reads the
// `datasource` variable and filters by the `namespace` and `job` variables where the series have them.
//
// Labels: `namespace` and `job` are the StreamingTrainingJob's, as the operator and the trainer expose
// them. The chart's ServiceMonitor scrapes the operator with honorLabels so that Prometheus keeps
// them; its PodMonitor sets a trainer's from the pod's namespace and the operator's pod label
// tilestream.io/job-name, so that a trainer cannot forge them.

import * as bargauge from '@grafana/grafana-foundation-sdk/bargauge';
import type * as cog from '@grafana/grafana-foundation-sdk/cog';
import * as common from '@grafana/grafana-foundation-sdk/common';
import * as dashboard from '@grafana/grafana-foundation-sdk/dashboard';
import * as prometheus from '@grafana/grafana-foundation-sdk/prometheus';
import * as stat from '@grafana/grafana-foundation-sdk/stat';
import * as table from '@grafana/grafana-foundation-sdk/table';
import * as timeseries from '@grafana/grafana-foundation-sdk/timeseries';
import { CONTROLLER, OPERATOR, TRAINER } from './metric-names.ts';

export const DASHBOARD_UID = 'tilestream';
export const DASHBOARD_TITLE = 'tilestream: streaming training jobs';

/** Every panel and variable query goes through this data source variable (Grafana's ${…}, not JS). */
// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana interpolates ${datasource}
const DS: common.DataSourceRef = { type: 'prometheus', uid: '${datasource}' };

/** Label matchers for the job-scoped series (operator per-job series and all trainer series). */
const JOB = 'namespace=~"$namespace", job=~"$job"';
const NS = 'namespace=~"$namespace"';
const CTRL = `controller="${CONTROLLER}"`;
const RATE = '[$__rate_interval]';

type AnyPanel = cog.Builder<dashboard.Panel>;
interface Query {
  expr: string;
  legend?: string;
  instant?: boolean;
  table?: boolean;
}

function target(q: Query, refId: string): prometheus.DataqueryBuilder {
  const b = new prometheus.DataqueryBuilder().datasource(DS).expr(q.expr).refId(refId);
  if (q.legend !== undefined) b.legendFormat(q.legend);
  if (q.instant) b.instant();
  else b.range();
  if (q.table) b.format(prometheus.PromQueryFormat.Table);
  return b;
}

/** What the SDK's panel builders share and base() sets. */
interface PanelBase<B> {
  datasource(d: common.DataSourceRef): B;
  title(t: string): B;
  description(d: string): B;
  height(h: number): B;
  span(w: number): B;
  withTarget(t: cog.Builder<cog.Dataquery>): B;
}

/** Sets what every panel shares: data source, title, description, size and its queries (A, B, …). */
function base<B extends PanelBase<B>>(
  b: B,
  o: { title: string; description: string; w: number; h: number; queries: Query[] },
): B {
  b.datasource(DS).title(o.title).description(o.description).height(o.h).span(o.w);
  o.queries.forEach((q, i) => {
    b.withTarget(target(q, String.fromCharCode(65 + i)));
  });
  return b;
}

interface PanelOpts {
  title: string;
  description: string;
  w: number;
  h: number;
  queries: Query[];
  unit: string;
  min?: number;
  max?: number;
  decimals?: number;
}

function timeSeries(o: PanelOpts & { bars?: boolean }): AnyPanel {
  const b = base(new timeseries.PanelBuilder(), o)
    .unit(o.unit)
    .legend(
      new common.VizLegendOptionsBuilder()
        .showLegend(true)
        .displayMode(common.LegendDisplayMode.List)
        .placement(common.LegendPlacement.Bottom),
    )
    .tooltip(
      new common.VizTooltipOptionsBuilder()
        .mode(common.TooltipDisplayMode.Multi)
        .sort(common.SortOrder.Descending),
    );
  if (o.min !== undefined) b.min(o.min);
  if (o.max !== undefined) b.max(o.max);
  if (o.decimals !== undefined) b.decimals(o.decimals);
  if (o.bars) b.drawStyle(common.GraphDrawStyle.Bars).fillOpacity(80);
  else b.fillOpacity(10);
  return b;
}

function singleStat(o: PanelOpts & { thresholds?: [number, string][] }): AnyPanel {
  const b = base(new stat.PanelBuilder(), o)
    .unit(o.unit)
    .graphMode(common.BigValueGraphMode.None)
    .colorMode(common.BigValueColorMode.Value)
    .reduceOptions(new common.ReduceDataOptionsBuilder().calcs(['lastNotNull']).values(false));
  if (o.decimals !== undefined) b.decimals(o.decimals);
  if (o.thresholds) b.thresholds(thresholds(o.thresholds));
  return b;
}

function bars(o: PanelOpts): AnyPanel {
  const b = base(new bargauge.PanelBuilder(), o)
    .unit(o.unit)
    .orientation(common.VizOrientation.Horizontal)
    .displayMode(common.BarGaugeDisplayMode.Basic)
    .reduceOptions(new common.ReduceDataOptionsBuilder().calcs(['lastNotNull']).values(false));
  if (o.min !== undefined) b.min(o.min);
  if (o.max !== undefined) b.max(o.max);
  if (o.decimals !== undefined) b.decimals(o.decimals);
  return b;
}

function tablePanel(o: PanelOpts & { hide: string[]; rename: Record<string, string> }): AnyPanel {
  return base(new table.PanelBuilder(), o)
    .unit(o.unit)
    .withTransformation({
      id: 'organize',
      options: { excludeByName: Object.fromEntries(o.hide.map((n) => [n, true])), renameByName: o.rename },
    });
}

function thresholds(steps: [number, string][]): dashboard.ThresholdsConfigBuilder {
  return new dashboard.ThresholdsConfigBuilder()
    .mode(dashboard.ThresholdsMode.Absolute)
    .steps(steps.map(([value, color], i) => ({ value: i === 0 ? null : value, color })));
}

const by = (labels: string, inner: string) => `max by (${labels}) (${inner})`;

function variables(): cog.Builder<dashboard.VariableModel>[] {
  const query = (name: string, label: string, q: string) =>
    new dashboard.QueryVariableBuilder(name)
      .label(label)
      .datasource(DS)
      .query(q)
      .definition(q)
      .refresh(dashboard.VariableRefresh.OnTimeRangeChanged)
      .sort(dashboard.VariableSort.AlphabeticalAsc)
      .multi(true)
      .includeAll(true)
      .allValue('.*')
      .current({ text: 'All', value: '$__all' });
  return [
    new dashboard.DatasourceVariableBuilder('datasource').label('Data source').type('prometheus'),
    query('namespace', 'Namespace', `label_values(${OPERATOR.jobs}, namespace)`),
    // jobs the operator planned, and trainers run on their own (`tilestream train` with --metrics-port)
    query('job', 'Job', `label_values({__name__=~"${OPERATOR.tileSize}|${TRAINER.progress}", ${NS}}, job)`),
  ];
}

/** The dashboard as the foundation SDK builds it (a plain object, ready for JSON.stringify). */
export function buildDashboard(): dashboard.Dashboard {
  const d = new dashboard.DashboardBuilder(DASHBOARD_TITLE)
    .uid(DASHBOARD_UID)
    .description(
      'StreamingTrainingJobs: GPU memory saved by streaming, throughput, loss and progress, tile sizes, and the operator. Generated by helm/dashboard (npm run generate:dashboard).',
    )
    .tags(['tilestream', 'kubernetes', 'training'])
    .editable()
    .tooltip(dashboard.DashboardCursorSync.Crosshair)
    .refresh('30s')
    .time({ from: 'now-6h', to: 'now' })
    .timezone('browser')
    .variables(variables());

  d.withRow(new dashboard.RowBuilder('Overview'));
  d.withPanel(
    singleStat({
      title: 'Jobs by phase',
      description: 'StreamingTrainingJobs in the selected namespaces, by status.phase (from the operator).',
      w: 8,
      h: 5,
      unit: 'none',
      queries: [{ expr: `sum by (phase) (${OPERATOR.jobs}{${NS}})`, legend: '{{phase}}', instant: true }],
    }),
  );
  d.withPanel(
    singleStat({
      title: 'Throughput',
      description: 'Image pixels trained on per second by all selected jobs, in megapixels per second.',
      w: 4,
      h: 5,
      unit: 'suffix: Mpx/s',
      decimals: 2,
      queries: [{ expr: `sum(rate(${TRAINER.pixels}{${JOB}}${RATE})) / 1e6` }],
    }),
  );
  d.withPanel(
    singleStat({
      title: 'Out-of-memory tile reductions',
      description:
        'Trainer out-of-memory exits that the operator answered with a smaller tile, in the time range. More than a few per hour means the memory plan is off for a GPU class.',
      w: 4,
      h: 5,
      unit: 'none',
      decimals: 0,
      thresholds: [
        [0, 'green'],
        [1, 'orange'],
        [3, 'red'],
      ],
      queries: [{ expr: `sum(increase(${OPERATOR.tileReductions}{${NS}}[$__range]))`, instant: true }],
    }),
  );
  d.withPanel(
    singleStat({
      title: 'Operator leader',
      description:
        'Operator replicas that hold the leader-election lease: 1 is healthy, 0 means no replica reconciles.',
      w: 4,
      h: 5,
      unit: 'none',
      decimals: 0,
      thresholds: [
        [0, 'red'],
        [1, 'green'],
        [2, 'red'],
      ],
      queries: [{ expr: `sum(${OPERATOR.leader})`, instant: true }],
    }),
  );
  d.withPanel(
    singleStat({
      title: 'Operator version',
      description: 'tilestream_operator_build_info of the running operator replicas.',
      w: 4,
      h: 5,
      unit: 'none',
      queries: [{ expr: `count by (version) (${OPERATOR.buildInfo})`, legend: '{{version}}', instant: true }],
    }),
  );

  d.withRow(new dashboard.RowBuilder('GPU memory saved by streaming'));
  d.withPanel(
    bars({
      title: 'Predicted peak GPU memory: streamed vs conventional',
      description:
        'The planner’s predicted peak memory per job, streamed at the planned tile and conventional (whole image at once), with the trainer’s measured streamed peak (tf.profile on the first image of each epoch).',
      w: 12,
      h: 9,
      unit: 'bytes',
      min: 0,
      queries: [
        {
          expr: by('namespace, job, mode', `${OPERATOR.predictedPeak}{${JOB}}`),
          legend: '{{namespace}}/{{job}} predicted {{mode}}',
          instant: true,
        },
        {
          expr: by('namespace, job', `${TRAINER.peakMemory}{${JOB}}`),
          legend: '{{namespace}}/{{job}} measured streamed',
          instant: true,
        },
      ],
    }),
  );
  d.withPanel(
    bars({
      title: 'Memory saved per job',
      description:
        'Predicted fraction of GPU memory that streaming saves: 1 − streamed / conventional peak, per job.',
      w: 6,
      h: 9,
      unit: 'percentunit',
      min: 0,
      max: 1,
      queries: [
        {
          expr: by('namespace, job', `${OPERATOR.savingsRatio}{${JOB}}`),
          legend: '{{namespace}}/{{job}}',
          instant: true,
        },
      ],
    }),
  );
  d.withPanel(
    bars({
      title: 'Memory saved per job (bytes)',
      description: 'Conventional minus streamed predicted peak memory, per job.',
      w: 6,
      h: 9,
      unit: 'bytes',
      min: 0,
      queries: [
        {
          expr:
            `${by('namespace, job', `${OPERATOR.predictedPeak}{${JOB}, mode="conventional"}`)}` +
            ` - ${by('namespace, job', `${OPERATOR.predictedPeak}{${JOB}, mode="streamed"}`)}`,
          legend: '{{namespace}}/{{job}}',
          instant: true,
        },
      ],
    }),
  );

  d.withRow(new dashboard.RowBuilder('Training'));
  d.withPanel(
    timeSeries({
      title: 'Throughput (megapixels/s)',
      description: 'Image pixels trained on per second, per job.',
      w: 12,
      h: 8,
      unit: 'suffix: Mpx/s',
      min: 0,
      queries: [
        {
          expr: `sum by (namespace, job) (rate(${TRAINER.pixels}{${JOB}}${RATE})) / 1e6`,
          legend: '{{namespace}}/{{job}}',
        },
      ],
    }),
  );
  d.withPanel(
    timeSeries({
      title: 'Images per second',
      description: 'Images trained on per second, per job.',
      w: 12,
      h: 8,
      unit: 'none',
      min: 0,
      queries: [
        {
          expr: `sum by (namespace, job) (rate(${TRAINER.images}{${JOB}}${RATE}))`,
          legend: '{{namespace}}/{{job}}',
        },
      ],
    }),
  );
  d.withPanel(
    timeSeries({
      title: 'Training loss',
      description: 'Loss of the last batch, per job.',
      w: 8,
      h: 8,
      unit: 'none',
      queries: [{ expr: by('namespace, job', `${TRAINER.loss}{${JOB}}`), legend: '{{namespace}}/{{job}}' }],
    }),
  );
  d.withPanel(
    timeSeries({
      title: 'Progress',
      description: 'Fraction of the run done (epochs × steps), per job.',
      w: 8,
      h: 8,
      unit: 'percentunit',
      min: 0,
      max: 1,
      queries: [
        { expr: by('namespace, job', `${TRAINER.progress}{${JOB}}`), legend: '{{namespace}}/{{job}}' },
      ],
    }),
  );
  d.withPanel(
    timeSeries({
      title: 'Validation AUC and epochs',
      description: 'Validation ROC AUC after each epoch, and epochs completed (right axis), per job.',
      w: 8,
      h: 8,
      unit: 'none',
      queries: [
        {
          expr: by('namespace, job', `${TRAINER.validationAuc}{${JOB}}`),
          legend: '{{namespace}}/{{job}} AUC',
        },
        { expr: by('namespace, job', `${TRAINER.epoch}{${JOB}}`), legend: '{{namespace}}/{{job}} epochs' },
      ],
    }),
  );
  d.withPanel(
    timeSeries({
      title: 'Time per image (p90)',
      description: '90th percentile of one streamed training step (one image), per job.',
      w: 12,
      h: 8,
      unit: 's',
      min: 0,
      queries: [
        {
          expr: `histogram_quantile(0.9, sum by (namespace, job, le) (rate(${TRAINER.stepDuration}_bucket{${JOB}}${RATE})))`,
          legend: '{{namespace}}/{{job}}',
        },
      ],
    }),
  );
  d.withPanel(
    bars({
      title: 'Checkpoint age',
      description:
        'Time since each running trainer wrote its last checkpoint: the work a restart would lose. The chart’s TilestreamCheckpointStale alert fires past prometheusRule.checkpointStaleSeconds.',
      w: 12,
      h: 8,
      unit: 's',
      min: 0,
      queries: [
        {
          expr: `time() - ${by('namespace, job', `${TRAINER.lastCheckpoint}{${JOB}} > 0`)}`,
          legend: '{{namespace}}/{{job}}',
          instant: true,
        },
      ],
    }),
  );

  d.withRow(new dashboard.RowBuilder('Placement'));
  d.withPanel(
    tablePanel({
      title: 'Tile sizes per GPU class',
      description:
        'The tile side the operator planned for each job, and the GPU class it placed the job on (cpu: no GPU requested).',
      w: 12,
      h: 8,
      unit: 'none',
      hide: ['Time'],
      rename: { gpu_class: 'GPU class', namespace: 'Namespace', job: 'Job', Value: 'Tile (px)' },
      queries: [
        {
          expr: by('gpu_class, namespace, job', `${OPERATOR.tileSize}{${JOB}}`),
          instant: true,
          table: true,
        },
      ],
    }),
  );
  d.withPanel(
    bars({
      title: 'Largest planned tile per GPU class',
      description: 'The largest tile side planned on each GPU class, over the selected jobs.',
      w: 6,
      h: 8,
      unit: 'none',
      min: 0,
      queries: [
        {
          expr: `max by (gpu_class) (${OPERATOR.tileSize}{${JOB}})`,
          legend: '{{gpu_class}}',
          instant: true,
        },
      ],
    }),
  );
  d.withPanel(
    bars({
      title: 'Free GPUs per class',
      description:
        'GPUs of each class not requested by the trainer pods the operator sees, out of the allocatable ones.',
      w: 6,
      h: 8,
      unit: 'none',
      min: 0,
      queries: [
        {
          expr: `sum by (gpu_class) (${OPERATOR.classFree})`,
          legend: '{{gpu_class}} free',
          instant: true,
        },
        {
          expr: `sum by (gpu_class) (${OPERATOR.classAllocatable})`,
          legend: '{{gpu_class}} allocatable',
          instant: true,
        },
      ],
    }),
  );
  d.withPanel(
    timeSeries({
      title: 'Jobs by phase over time',
      description: 'StreamingTrainingJobs by status.phase.',
      w: 12,
      h: 8,
      unit: 'none',
      min: 0,
      decimals: 0,
      queries: [{ expr: `sum by (phase) (${OPERATOR.jobs}{${NS}})`, legend: '{{phase}}' }],
    }),
  );
  d.withPanel(
    timeSeries({
      title: 'Out-of-memory tile reductions',
      description: 'Smaller-tile retries after a trainer ran out of GPU memory, per namespace.',
      w: 12,
      h: 8,
      unit: 'none',
      min: 0,
      bars: true,
      queries: [
        {
          expr: `sum by (namespace) (increase(${OPERATOR.tileReductions}{${NS}}${RATE}))`,
          legend: '{{namespace}}',
        },
      ],
    }),
  );

  d.withRow(new dashboard.RowBuilder('Operator'));
  d.withPanel(
    timeSeries({
      title: 'Reconciles and errors per second',
      description:
        'Reconciles of StreamingTrainingJobs by result, and reconcile errors (the TilestreamReconcileErrors alert fires on a sustained error rate).',
      w: 8,
      h: 8,
      unit: 'reqps',
      min: 0,
      queries: [
        {
          expr: `sum by (result) (rate(${OPERATOR.reconcileTotal}{${CTRL}}${RATE}))`,
          legend: '{{result}}',
        },
        {
          expr: `sum(rate(${OPERATOR.reconcileErrors}{${CTRL}}${RATE}))`,
          legend: 'errors',
        },
      ],
    }),
  );
  d.withPanel(
    timeSeries({
      title: 'Reconcile latency',
      description: 'Time per reconcile: median and 99th percentile.',
      w: 8,
      h: 8,
      unit: 's',
      min: 0,
      queries: [0.5, 0.99].map((q) => ({
        expr: `histogram_quantile(${q}, sum by (le) (rate(${OPERATOR.reconcileTime}_bucket{${CTRL}}${RATE})))`,
        legend: `p${q * 100}`,
      })),
    }),
  );
  d.withPanel(
    timeSeries({
      title: 'Work queue depth',
      description:
        'Jobs waiting to be reconciled, the 99th percentile of their wait, and retries per second.',
      w: 8,
      h: 8,
      unit: 'none',
      min: 0,
      queries: [
        { expr: `sum by (name) (${OPERATOR.queueDepth}{${CTRL}})`, legend: 'depth' },
        {
          expr: `sum(rate(${OPERATOR.queueRetries}{${CTRL}}${RATE}))`,
          legend: 'retries/s',
        },
        {
          expr: `histogram_quantile(0.99, sum by (le) (rate(${OPERATOR.queueDuration}_bucket{${CTRL}}${RATE})))`,
          legend: 'p99 wait (s)',
        },
      ],
    }),
  );
  d.withPanel(
    timeSeries({
      title: 'Busy workers and API watch errors',
      description:
        'Reconcile workers in use, and failed lists/watches of the API server per second, by resource.',
      w: 24,
      h: 7,
      unit: 'none',
      min: 0,
      queries: [
        { expr: `sum(${OPERATOR.activeWorkers}{${CTRL}})`, legend: 'busy workers' },
        {
          expr: `sum by (resource) (rate(${OPERATOR.watchErrors}${RATE}))`,
          legend: 'watch errors/s {{resource}}',
        },
      ],
    }),
  );
  const built = d.build();
  // Stable panel ids (Grafana links to a panel by id, e.g. ?viewPanel=7).
  (built.panels ?? []).forEach((p, i) => {
    p.id = i + 1;
  });
  return built;
}

export interface DashboardQuery {
  /** Where the query is: `panel "<title>" <refId>` or `variable <name>`. */
  where: string;
  expr: string;
}

interface JsonPanel {
  title?: string;
  targets?: { refId?: string; expr?: string }[];
  panels?: JsonPanel[];
}

/** Every Prometheus query of a dashboard JSON: panel targets (rows included) and variable queries. */
export function dashboardQueries(json: {
  panels?: JsonPanel[];
  templating?: { list?: { name?: string; type?: string; query?: unknown }[] };
}): DashboardQuery[] {
  const out: DashboardQuery[] = [];
  const walk = (panels: JsonPanel[]) => {
    for (const p of panels) {
      for (const t of p.targets ?? [])
        if (t.expr !== undefined) out.push({ where: `panel "${p.title}" ${t.refId}`, expr: t.expr });
      walk(p.panels ?? []);
    }
  };
  walk(json.panels ?? []);
  for (const v of json.templating?.list ?? []) {
    if (v.type !== 'query') continue;
    const q = typeof v.query === 'string' ? v.query : (v.query as { query?: string } | undefined)?.query;
    if (q !== undefined) out.push({ where: `variable ${v.name}`, expr: q });
  }
  return out;
}
