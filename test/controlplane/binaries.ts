// Finds the control-plane binaries in the tools cache, building what is missing with
// build-binaries.sh. A missing Go toolchain is not an error but a reason to skip, which callers
// pass to node:test's `skip` so the suite says why it did not run.
import { join } from 'node:path';
import { skipUnlessRequired } from '../require-all.ts';
import { type RunResult, run } from '../run-command.ts';

export type Component = 'etcd' | 'k8s' | 'helm' | 'promtool' | 'kueue';
export type Tool =
  | 'etcd'
  | 'kube-apiserver'
  | 'kube-controller-manager'
  | 'kube-scheduler'
  | 'kubectl'
  | 'helm'
  | 'promtool'
  | 'kueue-manager';

const TOOLS_OF: Record<Component, readonly Tool[]> = {
  etcd: ['etcd'],
  k8s: ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl'],
  helm: ['helm'],
  promtool: ['promtool'],
  // Its released CRDs and webhook manifests are copied beside it (<bin dir>/config/; see kueue.ts).
  kueue: ['kueue-manager'],
};

export type BinariesResult = { ok: true; bin: Partial<Record<Tool, string>> } | { ok: false; reason: string };

export const BUILD_SCRIPT = join(import.meta.dirname, 'build-binaries.sh');
/** Exit code of build-binaries.sh when Go is absent. */
export const EXIT_NO_GO = 3;
const EXIT_NOT_BUILT = 2;

function runScript(args: string[], echoStderr: boolean): Promise<RunResult> {
  return run('bash', [BUILD_SCRIPT, ...args], echoStderr);
}

function parseDirs(stdout: string): Map<Component, string> {
  const dirs = new Map<Component, string>();
  for (const line of stdout.split('\n')) {
    const m = /^(etcd|k8s|helm|promtool|kueue)=(.+)$/.exec(line.trim());
    if (m?.[1] && m[2]) dirs.set(m[1] as Component, m[2]);
  }
  return dirs;
}

/**
 * Returns the paths of the binaries of `components`, building missing ones (a cold build takes
 * tens of minutes on 2 cores). Set TILESTREAM_NO_BUILD=1 to skip instead of building.
 * Resolves `{ ok: false, reason }` when they cannot be had here (no Go, or building disabled);
 * rejects when a build was attempted and failed, since that is a defect to fix, not to skip.
 */
export async function ensureBinaries(
  components: readonly Component[] = ['etcd', 'k8s'],
): Promise<BinariesResult> {
  const found = await findOrBuild(components);
  // Callers pass the reason to node:test's skip; CI must fail instead.
  if (!found.ok) skipUnlessRequired(found.reason);
  return found;
}

async function findOrBuild(components: readonly Component[]): Promise<BinariesResult> {
  const probe = await runScript(['--print-dir', ...components], false);
  if (probe.code !== 0 && probe.code !== EXIT_NOT_BUILT) {
    throw new Error(`${BUILD_SCRIPT} --print-dir failed (exit ${probe.code}): ${probe.stderr}`);
  }
  if (probe.code === EXIT_NOT_BUILT) {
    if (process.env.TILESTREAM_NO_BUILD === '1') {
      return {
        ok: false,
        reason: `control-plane binaries (${components.join(', ')}) are not built and TILESTREAM_NO_BUILD=1; run ${BUILD_SCRIPT}`,
      };
    }
    const build = await runScript([...components], true);
    if (build.code === EXIT_NO_GO) {
      return {
        ok: false,
        reason: build.stderr.trim() || 'Go is not installed; cannot build kube-apiserver/etcd',
      };
    }
    if (build.code !== 0) {
      throw new Error(`building ${components.join(', ')} failed (exit ${build.code}):\n${build.stderr}`);
    }
  }
  const dirs = parseDirs(probe.stdout);
  const bin: Partial<Record<Tool, string>> = {};
  for (const c of components) {
    const dir = dirs.get(c);
    if (!dir) throw new Error(`${BUILD_SCRIPT} --print-dir printed no directory for ${c}`);
    for (const tool of TOOLS_OF[c]) bin[tool] = join(dir, tool);
  }
  return { ok: true, bin };
}
