// The trainer image's entrypoint under the test node agent, which runs pods as local processes with
// each mountPath exposed below $TILESTREAM_POD_ROOT. Absolute in-pod paths (the job file argument,
// data.root and checkpoint.path in the manifest, the termination-message path) get that prefix, and
// the projected service-account token becomes a kubeconfig for the trainer's status reports. The
// trainer itself runs unchanged. Test-only options come before the trainer's arguments:
//   --e2e-oom-once=<file>  exit 3 (the trainer's out-of-memory code) if <file> does not exist yet,
//                          after writing the planned tile size into it.
//   --e2e-slide-reads=<file>  record every OpenSlide region the trainer reads into <file>
//                          (slide-reads.ts, preloaded into the trainer).
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KubeConfig } from '@kubernetes/client-node';
import { parse, stringify } from 'yaml';
import { CACHE_ENV, cacheRoot } from '../../trainer/backend/native/builds.ts';
import { SLIDE_READS_ENV, SLIDE_READS_PRELOAD } from './slide-reads.ts';

const BIN = fileURLToPath(new URL('../../bin/tilestream.js', import.meta.url));
const root = process.env.TILESTREAM_POD_ROOT;
if (!root) throw new Error('TILESTREAM_POD_ROOT is unset: run this under test/controlplane/node-agent.ts');
const inPod = (p: string): string => (isAbsolute(p) ? join(root, p) : p);

const argv = process.argv.slice(2);
const own = argv.filter((a) => a.startsWith('--e2e-'));
const args = argv.filter((a) => !a.startsWith('--e2e-'));
const tileAt = args.indexOf('--tile-size');
const tile = tileAt >= 0 ? args[tileAt + 1] : undefined;

const oomFile = own.find((a) => a.startsWith('--e2e-oom-once='))?.slice('--e2e-oom-once='.length);
if (oomFile && !existsSync(oomFile)) {
  writeFileSync(oomFile, String(tile));
  process.stderr.write(`e2e: simulated out of memory at tile ${tile}\n`);
  process.exit(3);
}

// Pods on one machine would share port 9400: each trainer takes a free port instead (it logs which).
const metricsAt = args.indexOf('--metrics-port');
if (metricsAt >= 0) args[metricsAt + 1] = '0';
const [command, jobFile, ...rest] = args;
if (command !== 'train' || !jobFile) throw new Error(`expected 'train <job file> …', got ${args.join(' ')}`);

const job = parse(readFileSync(inPod(jobFile), 'utf8'));
job.spec.data.root = inPod(job.spec.data.root);
if (job.spec.checkpoint?.path) job.spec.checkpoint.path = inPod(job.spec.checkpoint.path);
const localJob = join(root, 'tmp', 'job.yaml');
writeFileSync(localJob, stringify(job));

const kc = new KubeConfig();
kc.loadFromCluster(root);
const kubeconfig = join(root, 'tmp', 'kubeconfig');
writeFileSync(kubeconfig, kc.exportConfig());

const env: NodeJS.ProcessEnv = { ...process.env, TILESTREAM_STATUS_KUBECONFIG: kubeconfig };
// HOME is the pod's root here, so the host's native TensorFlow build (the collective engine of a
// data-parallel job loads it) is named explicitly, as the trainer image has it in place.
env[CACHE_ENV] ??= cacheRoot({ XDG_CACHE_HOME: join(userInfo().homedir, '.cache') });
const term = process.env.TILESTREAM_TERMINATION_MESSAGE_PATH;
if (term) env.TILESTREAM_TERMINATION_MESSAGE_PATH = inPod(term);

const readsFile = own.find((a) => a.startsWith('--e2e-slide-reads='))?.slice('--e2e-slide-reads='.length);
const preload = readsFile ? ['--import', SLIDE_READS_PRELOAD] : [];
if (readsFile) env[SLIDE_READS_ENV] = readsFile;

const child = spawn(process.execPath, [...preload, BIN, 'train', localJob, ...rest], {
  stdio: 'inherit',
  env,
});
// The agent signals the whole process group, so the trainer gets SIGTERM too. This wrapper must
// outlive it: dying at once would end the container (and the agent would SIGKILL the group) before
// the trainer has written its checkpoint. Exit as the trainer did.
for (const s of ['SIGTERM', 'SIGINT'] as const) process.on(s, () => {});
child.on('exit', (code, signal) => {
  if (signal) {
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
  } else process.exit(code ?? 1);
});
