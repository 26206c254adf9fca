// Pure parts of the node agent: kubelet's `$(VAR)` expansion, downward-API field lookups, and the
// pod status a kubelet would report for a set of container states (KWOK's stage sequence, see
// local-control-plane.md §4.4).
import type { V1Container, V1Pod } from '@kubernetes/client-node';

/**
 * Kubelet's expansion of `$(VAR)` in command, args and env values: a defined name is replaced,
 * an undefined one is left as written, `$$` escapes `$`.
 */
export function expandVars(input: string, vars: ReadonlyMap<string, string>): string {
  let out = '';
  for (let i = 0; i < input.length; i++) {
    const ch = input[i];
    if (ch !== '$') {
      out += ch;
      continue;
    }
    const next = input[i + 1];
    if (next === '$') {
      out += '$';
      i++;
      continue;
    }
    if (next === '(') {
      const close = input.indexOf(')', i + 2);
      if (close !== -1) {
        const name = input.slice(i + 2, close);
        const value = vars.get(name);
        out += value ?? `$(${name})`;
        i = close;
        continue;
      }
    }
    out += ch;
  }
  return out;
}

/** Downward API `fieldRef.fieldPath` for the fields kubelet supports. */
export function podFieldValue(pod: V1Pod, fieldPath: string, podIP: string, hostIP: string): string {
  const m = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(fieldPath);
  if (m) {
    const map = m[1] === 'labels' ? pod.metadata?.labels : pod.metadata?.annotations;
    return map?.[m[2] ?? ''] ?? '';
  }
  switch (fieldPath) {
    case 'metadata.name':
      return pod.metadata?.name ?? '';
    case 'metadata.namespace':
      return pod.metadata?.namespace ?? '';
    case 'metadata.uid':
      return pod.metadata?.uid ?? '';
    case 'metadata.labels':
      return Object.entries(pod.metadata?.labels ?? {})
        .map(([k, v]) => `${k}="${v}"`)
        .join('\n');
    case 'metadata.annotations':
      return Object.entries(pod.metadata?.annotations ?? {})
        .map(([k, v]) => `${k}="${v}"`)
        .join('\n');
    case 'spec.nodeName':
      return pod.spec?.nodeName ?? '';
    case 'spec.serviceAccountName':
      return pod.spec?.serviceAccountName ?? '';
    case 'status.podIP':
    case 'status.podIPs':
      return podIP;
    case 'status.hostIP':
    case 'status.hostIPs':
      return hostIP;
    default:
      throw new Error(`downward API field '${fieldPath}' is not supported by the node agent`);
  }
}

const BINARY_SUFFIX: Record<string, number> = {
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};
const DECIMAL_SUFFIX: Record<string, number> = {
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
};

/** A resource.Quantity as a number (enough precision for env values in tests). */
export function quantityValue(q: string): number {
  const m = /^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$/.exec(q.trim());
  if (!m?.[1]) throw new Error(`not a Kubernetes quantity: '${q}'`);
  const n = Number(m[1]);
  const suffix = m[2] ?? '';
  const mult = BINARY_SUFFIX[suffix] ?? DECIMAL_SUFFIX[suffix];
  if (mult === undefined) throw new Error(`unknown quantity suffix '${suffix}' in '${q}'`);
  return n * mult;
}

/** `resourceFieldRef`: the container's limit/request divided by the divisor, rounded up (kubelet). */
export function resourceFieldValue(container: V1Container, resource: string, divisor = '1'): string {
  const m = /^(limits|requests)\.(.+)$/.exec(resource);
  if (!m?.[1] || !m[2])
    throw new Error(`resourceFieldRef '${resource}' must be limits.<name> or requests.<name>`);
  const src = m[1] === 'limits' ? container.resources?.limits : container.resources?.requests;
  const raw = src?.[m[2]] ?? (m[1] === 'requests' ? container.resources?.limits?.[m[2]] : undefined);
  // Unset limits default to node allocatable in kubelet; 0 tells the process "no limit known".
  if (raw === undefined) return '0';
  return String(Math.ceil(quantityValue(String(raw)) / quantityValue(divisor)));
}

export type ContainerState =
  | { kind: 'waiting'; reason: string; message?: string }
  | { kind: 'running'; startedAt: string }
  | {
      kind: 'terminated';
      exitCode: number;
      reason: string;
      message?: string;
      startedAt: string;
      finishedAt: string;
      signal?: number;
    };

export interface ContainerRecord {
  name: string;
  image: string;
  state: ContainerState;
  lastState?: ContainerState;
  restartCount: number;
  containerID?: string;
}

function stateJson(s: ContainerState | undefined): Record<string, unknown> {
  if (!s) return {};
  if (s.kind === 'waiting')
    return { waiting: { reason: s.reason, ...(s.message ? { message: s.message } : {}) } };
  if (s.kind === 'running') return { running: { startedAt: s.startedAt } };
  return {
    terminated: {
      exitCode: s.exitCode,
      reason: s.reason,
      ...(s.message ? { message: s.message } : {}),
      startedAt: s.startedAt,
      finishedAt: s.finishedAt,
      ...(s.signal ? { signal: s.signal } : {}),
    },
  };
}

export function containerStatusJson(c: ContainerRecord, isInit: boolean): Record<string, unknown> {
  const running = c.state.kind === 'running';
  return {
    name: c.name,
    image: c.image,
    imageID: '',
    ...(c.containerID ? { containerID: c.containerID } : {}),
    // Without readiness probes a running container is ready (kubelet); init containers are ready once done.
    ready: isInit ? c.state.kind === 'terminated' && c.state.exitCode === 0 : running,
    started: running,
    restartCount: c.restartCount,
    state: stateJson(c.state),
    lastState: stateJson(c.lastState),
  };
}

export type PodPhase = 'Pending' | 'Running' | 'Succeeded' | 'Failed';

/**
 * Phase from container states with kubelet's rules for a pod whose containers will not restart:
 * Pending until every container started; Running while any runs; Succeeded when all exited 0;
 * Failed when all ended and one did not exit 0. `willRestart` marks containers the agent restarts.
 */
export function podPhase(
  initDone: boolean,
  initFailed: boolean,
  containers: readonly ContainerRecord[],
  willRestart: (c: ContainerRecord) => boolean,
): PodPhase {
  if (initFailed) return 'Failed';
  if (!initDone) return 'Pending';
  const states = containers.map((c) => c.state);
  if (states.some((s) => s.kind === 'running')) return 'Running';
  if (containers.some((c) => c.state.kind === 'terminated' && willRestart(c))) return 'Running';
  if (states.every((s) => s.kind === 'terminated')) {
    return states.every((s) => s.kind === 'terminated' && s.exitCode === 0) ? 'Succeeded' : 'Failed';
  }
  // Some waiting, none running.
  return containers.some((c) => c.restartCount > 0) ? 'Running' : 'Pending';
}

export interface ConditionMemory {
  /** type -> [status, lastTransitionTime] as last written, to keep transition times stable. */
  last: Map<string, [string, string]>;
}

export function podConditions(
  mem: ConditionMemory,
  now: string,
  want: Record<string, { status: boolean; reason?: string }>,
  keep: readonly Record<string, unknown>[] = [],
): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [...keep];
  for (const [type, w] of Object.entries(want)) {
    const status = w.status ? 'True' : 'False';
    const prev = mem.last.get(type);
    const transition = prev && prev[0] === status ? prev[1] : now;
    mem.last.set(type, [status, transition]);
    out.push({
      type,
      status,
      lastProbeTime: null,
      lastTransitionTime: transition,
      ...(w.reason ? { reason: w.reason } : {}),
    });
  }
  return out;
}

/** Kubelet caps a termination message at 4096 bytes per container. */
export const TERMINATION_MESSAGE_LIMIT = 4096;

/** FallbackToLogsOnError takes the last 80 lines of the log, at most 2048 bytes. */
export function fallbackMessageFromLog(log: string): string {
  const lines = log.replace(/\n$/, '').split('\n').slice(-80).join('\n');
  const bytes = Buffer.from(lines);
  return bytes.length > 2048 ? bytes.subarray(bytes.length - 2048).toString() : lines;
}

export function truncateMessage(text: string): string {
  const b = Buffer.from(text);
  return b.length > TERMINATION_MESSAGE_LIMIT ? b.subarray(0, TERMINATION_MESSAGE_LIMIT).toString() : text;
}
