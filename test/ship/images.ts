// The images of the Dockerfile, built for real by build-images.sh (buildah, chroot isolation) into
// a cache outside the repository, and a small shell for running commands in them. npm test builds
// them before its suites (test/prepare.ts: `bash test/ship/build-images.sh`); a suite that finds
// them missing builds them itself unless TILESTREAM_NO_BUILD=1.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { skipUnlessRequired } from '../require-all.ts';
import { type RunResult, run } from '../run-command.ts';

export { type RunResult, run };

export const IMAGES_SCRIPT = join(import.meta.dirname, 'build-images.sh');
/** Exit code of build-images.sh when this machine cannot build images (not root, no apt-get). */
export const EXIT_CANNOT_BUILD_IMAGES = 3;
const EXIT_NOT_BUILT = 2;

export type Target = 'operator' | 'trainer-cpu' | 'trainer';
export const TARGETS: readonly Target[] = ['operator', 'trainer-cpu', 'trainer'];

/** images.json, written by build-images.sh after a successful build. */
export interface ImagesState {
  key: string;
  storageDriver: 'overlay' | 'vfs';
  root: string;
  runroot: string;
  buildah: string;
  base: { name: string; standIn: string; sizeBytes: number };
  images: Record<Target, { name: string; sizeBytes: number; buildSeconds: number }>;
  baseSeconds: number;
  totalSeconds: number;
  cacheDiskBytes: number;
  builtAt: string;
}

export type ImagesResult = { ok: true; state: ImagesState } | { ok: false; reason: string };

/**
 * The built images of the current sources, building them when they are missing or stale (a cold
 * build takes many minutes, see README). Resolves `{ ok: false }` with the reason when this machine
 * cannot build them (callers pass it to node:test's skip; under TILESTREAM_REQUIRE_ALL it throws);
 * rejects when a build was attempted and failed.
 */
export async function ensureImages(): Promise<ImagesResult> {
  const probe = await run('bash', [IMAGES_SCRIPT, '--print-state']);
  const statePath = probe.stdout.trim();
  if (probe.code !== 0 && probe.code !== EXIT_NOT_BUILT) {
    throw new Error(`${IMAGES_SCRIPT} --print-state failed (exit ${probe.code}): ${probe.stderr}`);
  }
  if (probe.code === EXIT_NOT_BUILT) {
    if (process.env.TILESTREAM_NO_BUILD === '1') {
      const reason = `the images of these sources are not built and TILESTREAM_NO_BUILD=1; run bash ${IMAGES_SCRIPT}`;
      skipUnlessRequired(reason);
      return { ok: false, reason };
    }
    const build = await run('bash', [IMAGES_SCRIPT], true);
    if (build.code === EXIT_CANNOT_BUILD_IMAGES) {
      const reason = build.stderr.trim() || 'this machine cannot build images';
      skipUnlessRequired(reason);
      return { ok: false, reason };
    }
    if (build.code !== 0) throw new Error(`${IMAGES_SCRIPT} failed (exit ${build.code}):\n${build.stderr}`);
  }
  return { ok: true, state: JSON.parse(readFileSync(statePath, 'utf8')) as ImagesState };
}

/** buildah on the images' own store. */
export function buildah(state: ImagesState, args: string[]): Promise<RunResult> {
  return run('buildah', [
    '--root',
    state.root,
    '--runroot',
    state.runroot,
    '--storage-driver',
    state.storageDriver,
    ...args,
  ]);
}

async function buildahOk(state: ImagesState, args: string[]): Promise<string> {
  const r = await buildah(state, args);
  if (r.code !== 0) throw new Error(`buildah ${args.join(' ')} failed (exit ${r.code}): ${r.stderr}`);
  return r.stdout.trim();
}

/** The parts of an image's configuration that the chart and the operator's Jobs rely on. */
export interface ImageConfig {
  entrypoint: string[];
  cmd: string[];
  user: string;
  workingDir: string;
  env: Record<string, string>;
}

/**
 * A working container of an image: commands run in it with `buildah run --isolation chroot`, as
 * the image's user, in its working directory, with its environment; its root filesystem is
 * readable from here through `buildah mount`. Remove it when done.
 */
export class ImageContainer {
  readonly #state: ImagesState;
  readonly id: string;
  readonly config: ImageConfig;
  readonly rootfs: string;

  private constructor(state: ImagesState, id: string, config: ImageConfig, rootfs: string) {
    this.#state = state;
    this.id = id;
    this.config = config;
    this.rootfs = rootfs;
  }

  static async create(state: ImagesState, image: string): Promise<ImageContainer> {
    const name = `tilestream-test-${image.replace(/^.*\/|:.*$/g, '')}-${process.pid}`;
    const id = await buildahOk(state, ['from', '--pull=never', '--quiet', '--name', name, image]);
    try {
      const inspect = JSON.parse(await buildahOk(state, ['inspect', '--type', 'container', id])) as {
        Docker?: { config?: Record<string, unknown> };
        OCIv1: { config: Record<string, unknown> };
      };
      const c = (inspect.Docker?.config ?? inspect.OCIv1.config) as {
        Entrypoint?: string[];
        Cmd?: string[];
        User?: string;
        WorkingDir?: string;
        Env?: string[];
      };
      const env = Object.fromEntries(
        (c.Env ?? []).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
      );
      const config: ImageConfig = {
        entrypoint: c.Entrypoint ?? [],
        cmd: c.Cmd ?? [],
        user: c.User ?? '',
        workingDir: c.WorkingDir ?? '/',
        env,
      };
      const rootfs = await buildahOk(state, ['mount', id]);
      return new ImageContainer(state, id, config, rootfs);
    } catch (err) {
      await buildah(state, ['rm', id]);
      throw err;
    }
  }

  /** Runs argv as the image's user (`--user` overrides), like a container runtime would. */
  run(argv: string[], o: { user?: string; env?: Record<string, string> } = {}): Promise<RunResult> {
    const args = ['run', '--isolation', 'chroot'];
    const user = o.user ?? this.config.user;
    if (user !== '') args.push('--user', user);
    for (const [k, v] of Object.entries(o.env ?? {})) args.push('--env', `${k}=${v}`);
    return buildah(this.#state, [...args, this.id, '--', ...argv]);
  }

  /** Copies a host file or folder into the container, owned by `chown` (user:group). */
  async copy(src: string, dest: string, chown: string): Promise<void> {
    await buildahOk(this.#state, ['copy', '--chown', chown, this.id, src, dest]);
  }

  async remove(): Promise<void> {
    await buildah(this.#state, ['umount', this.id]);
    await buildah(this.#state, ['rm', this.id]);
  }
}
