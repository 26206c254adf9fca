// `tilestream operator`: the Kubernetes operator's command. This module only declares the options;
// the controller code is imported when the command runs, so `tilestream train` in a trainer pod
// never loads it.

import { type Command, InvalidArgumentError, Option } from 'commander';
import { ConfigError, type OperatorOptions, operatorConfig } from './config.ts';
import { LOG_LEVELS } from './log.ts';

function intOption(value: string): number {
  if (!/^\d+$/.test(value.trim())) throw new InvalidArgumentError(`expected a whole number, got '${value}'`);
  return Number(value);
}

const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

/**
 * Adds `tilestream operator` to the program. `version` is stamped on the build-info metric and
 * the trainer image default (`tilestream:<version>`).
 */
export function registerOperatorCommand(program: Command, version = program.version() ?? '0.0.0'): void {
  program
    .command('operator')
    .description(
      'run the StreamingTrainingJob operator: plan tiles from GPU memory, run trainer Jobs, keep status (in-cluster config or KUBECONFIG)',
    )
    .addOption(
      new Option(
        '--namespace <ns>',
        'namespace to watch; repeat or comma-separate for several (default: all)',
      )
        .argParser(collect)
        .env('TILESTREAM_NAMESPACES'),
    )
    .addOption(new Option('--no-leader-elect', 'run without leader election (one replica only)'))
    .addOption(
      new Option('--lease-namespace <ns>', 'namespace of the leader Lease (default: the pod namespace)').env(
        'TILESTREAM_LEASE_NAMESPACE',
      ),
    )
    .addOption(new Option('--lease-name <name>', 'name of the leader Lease').default('tilestream-operator'))
    .addOption(new Option('--identity <id>', 'leader election identity (default: pod name + random suffix)'))
    .addOption(
      new Option('--metrics-port <port>', 'port of /metrics')
        .argParser(intOption)
        .env('TILESTREAM_METRICS_PORT'),
    )
    .addOption(
      new Option('--health-port <port>', 'port of /healthz and /readyz')
        .argParser(intOption)
        .env('TILESTREAM_HEALTH_PORT'),
    )
    .addOption(
      new Option(
        '--metrics-auth',
        'serve /metrics only to scrapers with a bearer token that the API server authenticates (TokenReview) and allows to get /metrics (SubjectAccessReview)',
      ).env('TILESTREAM_METRICS_AUTH'),
    )
    .addOption(
      new Option(
        '--metrics-cert-dir <dir>',
        'serve /metrics over HTTPS with tls.crt and tls.key from this folder (reloaded when they change)',
      ).env('TILESTREAM_METRICS_CERT_DIR'),
    )
    .addOption(new Option('--bind-address <host>', 'address the servers listen on (default: all)'))
    .addOption(
      new Option('--trainer-image <image>', 'trainer image when spec.image is unset').env(
        'TILESTREAM_TRAINER_IMAGE',
      ),
    )
    .addOption(
      new Option(
        '--trainer-command <cmd>',
        "trainer container command (default: the image's entrypoint)",
      ).env('TILESTREAM_TRAINER_COMMAND'),
    )
    .addOption(
      new Option('--image-pull-policy <policy>', 'trainer image pull policy')
        .choices(['Always', 'IfNotPresent', 'Never'])
        .env('TILESTREAM_IMAGE_PULL_POLICY'),
    )
    .addOption(
      new Option(
        '--trainer-image-pull-secrets <names>',
        "secrets in each job's namespace for pulling the trainer image (comma-separated)",
      )
        .argParser(collect)
        .env('TILESTREAM_TRAINER_IMAGE_PULL_SECRETS'),
    )
    .addOption(
      new Option(
        '--peer-timeout-seconds <n>',
        'how long a rank of a data-parallel job waits for its peers before it exits 6 (default 600)',
      )
        .argParser(intOption)
        .env('TILESTREAM_OPERATOR_PEER_TIMEOUT_SECONDS'),
    )
    .addOption(
      new Option(
        '--gpu-memory-table <file>',
        "YAML/JSON map of GPU product to memory ('Tesla-T4: 16Gi') for nodes without GPU Feature Discovery",
      ).env('TILESTREAM_GPU_MEMORY_TABLE'),
    )
    .addOption(
      new Option(
        '--product-labels <keys>',
        'node labels that name the GPU product without GFD (comma-separated)',
      )
        .argParser(collect)
        .env('TILESTREAM_PRODUCT_LABELS'),
    )
    .addOption(
      new Option(
        '--tenant-policy <namespace/name>',
        'ConfigMap of the tenant policy (allowed images, volume kinds, hostPath prefixes): each job is re-checked against it before its children are created; a missing ConfigMap refuses every job',
      ).env('TILESTREAM_TENANT_POLICY'),
    )
    .addOption(
      new Option('--field-manager <name>', 'server-side apply field manager').env('TILESTREAM_FIELD_MANAGER'),
    )
    .addOption(
      new Option('--workers <n>', 'concurrent reconciles').argParser(intOption).env('TILESTREAM_WORKERS'),
    )
    .addOption(
      new Option('--resync <seconds>', 'requeue every job this often')
        .argParser(intOption)
        .env('TILESTREAM_RESYNC_SECONDS'),
    )
    .addOption(
      new Option('--log-level <level>', 'log level').choices([...LOG_LEVELS]).env('TILESTREAM_LOG_LEVEL'),
    )
    .addOption(
      new Option('--kubeconfig <file>', 'kubeconfig (default: KUBECONFIG, ~/.kube/config, or in-cluster)'),
    )
    .action(async (o: OperatorOptions, cmd: Command) => {
      let config: ReturnType<typeof operatorConfig>;
      try {
        config = operatorConfig(o, process.env, version);
      } catch (e) {
        if (e instanceof ConfigError) cmd.error(`error: ${e.message}`, { exitCode: 2 });
        throw e;
      }
      const { runOperator } = await import('./main.ts');
      process.exitCode = await runOperator(config, { version });
    });
}
