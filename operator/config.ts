// The operator's configuration from flags and environment (the Helm chart sets the environment).
// Pure apart from the lease-namespace fallback, which reads the service account's namespace file.

import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { FIELD_MANAGER } from './children/names.ts';
import { DEFAULT_TRAINER_SETTINGS, type TrainerSettings } from './children/trainer-job.ts';
import { LOG_LEVELS, type LogLevel } from './log.ts';

export interface OperatorConfig {
  /** Namespaces to watch; undefined: all. */
  namespaces: string[] | undefined;
  leaderElection: { enabled: boolean; namespace: string; name: string; identity: string };
  metricsPort: number;
  healthPort: number;
  bindAddress: string | undefined;
  /** /metrics only for authenticated, authorised scrapers. */
  metricsAuth: boolean;
  /** tls.crt + tls.key: /metrics over HTTPS. */
  metricsCertDir: string | undefined;
  trainer: TrainerSettings;
  gpuMemoryTablePath: string | undefined;
  /** Node labels naming the GPU product when GFD is absent; undefined: the built-in list. */
  productLabels: string[] | undefined;
  /** The tenant policy's ConfigMap; undefined: no re-check (the admission policy alone, if any). */
  tenantPolicy: { namespace: string; name: string } | undefined;
  fieldManager: string;
  workers: number;
  resyncMs: number;
  logLevel: LogLevel;
  kubeconfig: string | undefined;
}

/** The options as commander parses them (flags, with environment fallbacks). */
export interface OperatorOptions {
  namespace?: string[];
  leaderElect?: boolean;
  leaseNamespace?: string;
  leaseName?: string;
  identity?: string;
  metricsPort?: number;
  healthPort?: number;
  bindAddress?: string;
  metricsAuth?: boolean;
  metricsCertDir?: string;
  trainerImage?: string;
  trainerCommand?: string;
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  trainerImagePullSecrets?: string[];
  /** How long a rank of a data-parallel job waits for its peers (TILESTREAM_PEER_TIMEOUT_SECONDS; default 600). */
  peerTimeoutSeconds?: number;
  gpuMemoryTable?: string;
  productLabels?: string[];
  tenantPolicy?: string;
  fieldManager?: string;
  workers?: number;
  resync?: number;
  logLevel?: string;
  kubeconfig?: string;
}

const SA_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

function podNamespace(env: Record<string, string | undefined>): string | undefined {
  if (env.POD_NAMESPACE) return env.POD_NAMESPACE;
  try {
    return readFileSync(SA_NAMESPACE_FILE, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Splits repeated and comma-separated values: `--namespace a,b --namespace c`. */
export function listOption(values: readonly string[] | undefined): string[] | undefined {
  const out = (values ?? [])
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter((v) => v !== '');
  return out.length > 0 ? [...new Set(out)] : undefined;
}

export function operatorConfig(
  o: OperatorOptions,
  env: Record<string, string | undefined> = process.env,
  version = '0.0.0',
): OperatorConfig {
  const logLevel = (o.logLevel ?? 'info') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got '${o.logLevel}'`);
  }
  const leaseNamespace = o.leaseNamespace ?? podNamespace(env);
  const leaderElect = o.leaderElect ?? true;
  if (leaderElect && !leaseNamespace) {
    throw new ConfigError(
      'leader election needs a namespace for its Lease: set --lease-namespace (or POD_NAMESPACE), or pass --no-leader-elect',
    );
  }
  const workers = o.workers ?? 4;
  if (!Number.isInteger(workers) || workers < 1)
    throw new ConfigError(`--workers must be at least 1, got ${o.workers}`);
  const resyncSeconds = o.resync ?? 600;
  if (!(resyncSeconds >= 10)) throw new ConfigError(`--resync must be at least 10 seconds, got ${o.resync}`);
  for (const [flag, port] of [
    ['--metrics-port', o.metricsPort],
    ['--health-port', o.healthPort],
  ] as const) {
    if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port <= 65535)) {
      throw new ConfigError(`${flag} must be a port number (0–65535), got ${port}`);
    }
  }
  const policyRef = o.tenantPolicy?.split('/');
  if (policyRef && (policyRef.length !== 2 || !policyRef[0] || !policyRef[1])) {
    throw new ConfigError(
      `--tenant-policy must be <namespace>/<name> of a ConfigMap, got '${o.tenantPolicy}'`,
    );
  }
  // Unique per process, as client-go recommends (hostname + random suffix): two replicas never share an identity.
  const pullSecrets = listOption(o.trainerImagePullSecrets);
  if (
    o.peerTimeoutSeconds !== undefined &&
    !(Number.isInteger(o.peerTimeoutSeconds) && o.peerTimeoutSeconds >= 1)
  )
    throw new ConfigError(
      `--peer-timeout-seconds must be a whole number of seconds, at least 1; got ${o.peerTimeoutSeconds}`,
    );
  const identity = o.identity ?? `${env.POD_NAME ?? hostname()}_${Math.random().toString(36).slice(2, 10)}`;
  return {
    namespaces: listOption(o.namespace),
    leaderElection: {
      enabled: leaderElect,
      namespace: leaseNamespace ?? 'default',
      name: o.leaseName ?? 'tilestream-operator',
      identity,
    },
    metricsPort: o.metricsPort ?? 8080,
    healthPort: o.healthPort ?? 8081,
    bindAddress: o.bindAddress,
    metricsAuth: o.metricsAuth === true,
    metricsCertDir: o.metricsCertDir,
    trainer: {
      ...DEFAULT_TRAINER_SETTINGS,
      image: o.trainerImage ?? `tilestream:${version}`,
      ...(o.trainerCommand !== undefined && { command: o.trainerCommand.split(/\s+/).filter(Boolean) }),
      ...(o.imagePullPolicy !== undefined && { imagePullPolicy: o.imagePullPolicy }),
      ...(pullSecrets && { imagePullSecrets: pullSecrets }),
      ...(o.peerTimeoutSeconds !== undefined && { peerTimeoutSeconds: o.peerTimeoutSeconds }),
    },
    gpuMemoryTablePath: o.gpuMemoryTable,
    productLabels: listOption(o.productLabels),
    tenantPolicy: policyRef && { namespace: policyRef[0] as string, name: policyRef[1] as string },
    fieldManager: o.fieldManager ?? FIELD_MANAGER,
    workers,
    resyncMs: resyncSeconds * 1000,
    logLevel,
    kubeconfig: o.kubeconfig,
  };
}
