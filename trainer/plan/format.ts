// The report of a plan: readable text (formatPlan) and JSON (planJson), for `tilestream plan`.

import { ATTENTION_HIDDEN_DEFAULT } from '../streaming/network-shape.ts';
import { formatTable } from '../text-table.ts';
import type { PlanInputs } from './inputs.ts';
import { type MemoryPrediction, type PlanNetwork, parameterCount, TERM_LABELS, TERMS } from './memory.ts';
import { formatBytes, type NothingFits, type TileFits, type TilePlan, tileConstraints } from './planner.ts';

function describeNetwork(i: PlanInputs, net: PlanNetwork): string {
  const { stride, minimum } = tileConstraints(net, i.minTile ?? 0);
  const params = parameterCount(net);
  const width = i.width !== undefined ? `, width ${i.width}` : '';
  return (
    `${i.model}${width}, streamed to ${net.body.output} (stride ${stride}, minimum tile ${minimum}), ` +
    `${(params / 1e6).toFixed(params < 1e5 ? 3 : 1)} M parameters, ${headOf(net)}`
  );
}

/** The head's pooling, with the attention's hidden size. */
function headOf(net: PlanNetwork): string {
  return net.pooling === 'attention'
    ? `attention head (hidden ${net.attentionHiddenSize ?? ATTENTION_HIDDEN_DEFAULT})`
    : `${net.pooling} pooling head`;
}

function pct(x: number): string {
  return `${(100 * x).toFixed(x > 0.999 ? 2 : 1)}%`;
}

function breakdownRows(columns: readonly MemoryPrediction[]): string[][] {
  const rows: string[][] = [];
  for (const t of TERMS) {
    if (columns.every((c) => c.breakdown[t] === 0)) continue;
    rows.push([TERM_LABELS[t], ...columns.map((c) => formatBytes(c.breakdown[t]))]);
  }
  rows.push(['total', ...columns.map((c) => formatBytes(c.requiredBytes))]);
  return rows;
}

/** The readable report of a plan. */
export function formatPlan(i: PlanInputs, net: PlanNetwork, plan: TilePlan): string {
  const lines: string[] = [];
  const budget =
    i.budgetBytes !== undefined && i.budgetBytes < Number.MAX_VALUE
      ? `${formatBytes(i.budgetBytes)}, headroom ${pct(i.headroom)} → ${formatBytes(i.budgetBytes * (1 - i.headroom))} usable`
      : 'none given';
  lines.push(`model         ${describeNetwork(i, net)}`);
  lines.push(
    `image         ${i.image[0]} × ${i.image[1]}, ${i.channels} channel${i.channels > 1 ? 's' : ''}`,
  );
  lines.push(`budget        ${budget}`);
  lines.push(
    `settings      backend ${i.backend}, ${i.dtype}, optimizer ${i.optimizer}${i.saliency ? ', saliency' : ''} (from ${i.source})`,
  );
  lines.push('');
  if (!plan.fits) {
    lines.push(`does not fit  ${plan.reason}`);
    lines.push('');
    lines.push(
      formatTable(['term', `streamed, tile ${plan.smallestTile}`], breakdownRows([plan.streamed])).trimEnd(),
    );
    return `${lines.join('\n')}\n`;
  }
  const s = plan.streamed;
  const c = plan.conventional;
  const tile = s.tile[0] === s.tile[1] ? `${s.tile[0]}` : `${s.tile[0]} × ${s.tile[1]}`;
  lines.push(
    `tile          ${tile}: ${s.tiles} tile${s.tiles > 1 ? 's' : ''}, area factor ${s.areaFactor.toFixed(2)}, ` +
      `predicted time ${s.timeRatio.toFixed(2)}× conventional`,
  );
  const lean = plan.leanTile;
  if (plan.largestTile !== undefined) {
    lines.push(
      `              (the fewest tiles, least overlap: the largest tile that fits, ${plan.largestTile}, ` +
        `makes the same ${s.tiles} tiles with more compute and memory)`,
    );
  } else if (lean.tile < plan.tile && lean.areaFactor < s.areaFactor * 0.98) {
    lines.push(
      `              (tile ${lean.tile} needs the same ${lean.tiles} tiles with area factor ${lean.areaFactor.toFixed(2)}: ` +
        `${pct(1 - lean.areaFactor / s.areaFactor)} less compute and less memory; --tile ${lean.tile})`,
    );
  }
  lines.push(`streamed      ${formatBytes(s.requiredBytes)} at peak (in the ${s.peakPhase} pass)`);
  lines.push(
    `conventional  ${formatBytes(c.requiredBytes)} at peak${plan.conventionalFits ? ' (would fit too)' : ' (does not fit)'}`,
  );
  lines.push(`saving        ${formatBytes(plan.savedBytes)} (${pct(plan.savingsRatio)} less memory)`);
  lines.push('');
  lines.push(formatTable(['term', 'streamed', 'conventional'], breakdownRows([s, c])).trimEnd());
  lines.push('');
  lines.push(
    'Bytes are distinct tensor buffers at the peak plus the backend estimate; tf.profile counts every handle ' +
      `(streamed ${formatBytes(s.peakBytes)}, conventional ${formatBytes(c.peakBytes)}).`,
  );
  return `${lines.join('\n')}\n`;
}

/** The JSON report of a plan. */
export function planJson(i: PlanInputs, net: PlanNetwork, plan: TilePlan): unknown {
  const { stride, minimum } = tileConstraints(net, i.minTile ?? 0);
  const inputs = {
    model: i.model,
    bodyEnd: net.body.output,
    ...(i.width !== undefined && { width: i.width }),
    channels: i.channels,
    image: { height: i.image[0], width: i.image[1] },
    ...(i.budgetBytes !== undefined && i.budgetBytes < Number.MAX_VALUE && { budgetBytes: i.budgetBytes }),
    headroom: i.headroom,
    optimizer: i.optimizer,
    dtype: i.dtype,
    backend: i.backend,
    saliency: i.saliency,
    pooling: net.pooling,
    ...(net.pooling === 'attention' && {
      attentionHiddenSize: net.attentionHiddenSize ?? ATTENTION_HIDDEN_DEFAULT,
    }),
    stride,
    minimumTile: minimum,
    parameters: parameterCount(net),
    source: i.source,
  };
  if (!plan.fits) {
    const { streamed, ...rest } = plan as NothingFits;
    return { ...inputs, ...rest, streamed: predictionJson(streamed) };
  }
  const p = plan as TileFits;
  return {
    ...inputs,
    fits: true,
    tile: p.tile,
    usableBytes: p.usableBytes,
    tiles: p.streamed.tiles,
    areaFactor: p.streamed.areaFactor,
    timeRatio: p.streamed.timeRatio,
    savingsRatio: p.savingsRatio,
    savedBytes: p.savedBytes,
    conventionalFits: p.conventionalFits,
    leanTile: p.leanTile,
    ...(p.largestTile !== undefined && { largestTile: p.largestTile }),
    streamed: predictionJson(p.streamed),
    conventional: predictionJson(p.conventional),
  };
}

function predictionJson(p: MemoryPrediction): Record<string, unknown> {
  return {
    requiredBytes: p.requiredBytes,
    bufferPeakBytes: p.bufferPeakBytes,
    workspaceBytes: p.workspaceBytes,
    peakPhase: p.peakPhase,
    breakdown: p.breakdown,
    phases: p.phases,
    tfprofilePeakBytes: p.peakBytes,
    tfprofileBreakdown: p.tfjsBreakdown,
    savedBytesPerPixel: p.savedBytesPerPixel,
  };
}
