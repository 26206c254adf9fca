// A list-watch cache of one resource (client-go's reflector + store), hardened the way the best
// TypeScript operators do it (operator-anchors.md §4): a 410 Gone (expired resourceVersion) is
// answered by a relist; a watchdog relists when a watch stays silent longer than it can be
// healthy (a half-open connection never errors); failed lists and watches are retried with
// jittered exponential backoff; bookmarks keep the resourceVersion fresh. Handlers receive
// add/update/delete and should only enqueue keys.

import { type ApiError, isGone, type KubeClient, TransportError, type WatchEvent } from '../kube/client.ts';
import { collectionPath, type ResourceType } from '../kube/resources.ts';
import { type KubeObject, keyOf, type ObjectList } from '../kube/types.ts';
import type { Clock } from './clock.ts';

export interface InformerLogger {
  info(message: string, meta?: Record<string, unknown>): void;
  warn(message: string, meta?: Record<string, unknown>): void;
  debug(message: string, meta?: Record<string, unknown>): void;
}

export type RelistReason = 'initial' | 'gone' | 'watchdog' | 'error';

export interface InformerOptions {
  client: KubeClient;
  resource: ResourceType;
  /** undefined: all namespaces (or a cluster-scoped resource). */
  namespace?: string;
  labelSelector?: string;
  clock: Clock;
  log: InformerLogger;
  /** Items per list page; default 500. */
  pageSize?: number;
  /** Server-side watch timeout; default 300 s (the server ends the watch; we re-watch from the last version). */
  watchTimeoutSeconds?: number;
  /** Silence after which a watch is presumed dead and the cache relisted; default watch timeout + 60 s. */
  watchdogMs?: number;
  /** Reconnect backoff (client-go reflector: 800 ms doubling to 30 s), with up to +100% jitter. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Randomness for jitter (tests pass a constant). */
  random?: () => number;
  onRelist?: (reason: RelistReason) => void;
  onWatchError?: (error: Error) => void;
}

export interface InformerHandlers<T> {
  add?(obj: T): void;
  update?(old: T, obj: T): void;
  delete?(obj: T): void;
}

/** Read-only view of a cache, what reconcile gets. */
export interface Store<T> {
  get(key: string): T | undefined;
  list(): T[];
}

class Gone extends Error {}

export class Informer<T extends KubeObject> implements Store<T> {
  readonly #o: Required<Omit<InformerOptions, 'namespace' | 'labelSelector' | 'onRelist' | 'onWatchError'>> &
    InformerOptions;
  readonly #items = new Map<string, T>();
  readonly #handlers: InformerHandlers<T>[] = [];
  readonly #stop = new AbortController();
  #synced = false;
  #syncWaiters: (() => void)[] = [];
  #running: Promise<void> | undefined;
  #failures = 0;

  constructor(o: InformerOptions) {
    const watchTimeoutSeconds = o.watchTimeoutSeconds ?? 300;
    this.#o = {
      pageSize: 500,
      watchTimeoutSeconds,
      watchdogMs: watchTimeoutSeconds * 1000 + 60_000,
      backoffBaseMs: 800,
      backoffMaxMs: 30_000,
      random: Math.random,
      ...o,
    };
  }

  get resource(): string {
    return `${this.#o.resource.plural}${this.#o.namespace ? ` in ${this.#o.namespace}` : ''}`;
  }

  on(handlers: InformerHandlers<T>): void {
    this.#handlers.push(handlers);
  }

  get(key: string): T | undefined {
    return this.#items.get(key);
  }

  list(): T[] {
    return [...this.#items.values()];
  }

  hasSynced(): boolean {
    return this.#synced;
  }

  /** Resolves after the first complete list (or at stop). */
  waitForSync(): Promise<void> {
    if (this.#synced || this.#stop.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => this.#syncWaiters.push(resolve));
  }

  start(): void {
    this.#running ??= this.#run();
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    for (const w of this.#syncWaiters.splice(0)) w();
    await this.#running;
  }

  async #run(): Promise<void> {
    let version: string | undefined;
    let relist: RelistReason | undefined = 'initial';
    while (!this.#stop.signal.aborted) {
      try {
        if (relist !== undefined) {
          version = await this.#list();
          this.#o.onRelist?.(relist);
          relist = undefined;
        }
        const ended = await this.#watch(version as string);
        version = ended.version;
        if (ended.watchdog) relist = 'watchdog';
        else this.#failures = 0;
      } catch (e) {
        if (this.#stop.signal.aborted) break;
        if (e instanceof Gone || isGone(e)) {
          this.#o.log.info(`${this.resource}: resource version expired (410 Gone); relisting`);
          relist = 'gone';
          continue;
        }
        const err = e as Error;
        this.#o.onWatchError?.(err);
        // A failed list is retried as a list; a failed watch resumes from the last version.
        if (relist === undefined && version === undefined) relist = 'error';
        const delay = this.#backoff();
        const hint = (e as ApiError).status === 404 ? ' (is its CustomResourceDefinition installed?)' : '';
        this.#o.log.warn(`${this.resource}: ${err.message}${hint}; retrying in ${delay} ms`, {
          status: (e as ApiError).status,
          transport: e instanceof TransportError ? e.kind : undefined,
        });
        await this.#o.clock.sleep(delay, this.#stop.signal);
      }
    }
  }

  #backoff(): number {
    const base = Math.min(this.#o.backoffBaseMs * 2 ** this.#failures, this.#o.backoffMaxMs);
    this.#failures++;
    return Math.round(base * (1 + this.#o.random()));
  }

  #query(): Record<string, string | undefined> {
    return { labelSelector: this.#o.labelSelector };
  }

  /** Lists every page and replaces the cache, telling handlers what changed. Returns the list's version. */
  async #list(): Promise<string> {
    const path = collectionPath(this.#o.resource, this.#o.namespace);
    const fresh = new Map<string, T>();
    let cont: string | undefined;
    let version = '';
    do {
      const page = await this.#o.client.request<ObjectList<T>>('GET', path, {
        query: { ...this.#query(), limit: this.#o.pageSize, continue: cont },
      });
      for (const item of page.items) fresh.set(keyOf(item), item);
      cont = page.metadata?.continue || undefined;
      version = page.metadata?.resourceVersion ?? version;
    } while (cont !== undefined);
    const old = new Map(this.#items);
    this.#items.clear();
    for (const [k, obj] of fresh) {
      this.#items.set(k, obj);
      const before = old.get(k);
      if (!before) this.#emit('add', obj);
      else if (before.metadata.resourceVersion !== obj.metadata.resourceVersion)
        this.#emit('update', obj, before);
    }
    for (const [k, obj] of old) if (!fresh.has(k)) this.#emit('delete', obj);
    if (!this.#synced) {
      this.#synced = true;
      for (const w of this.#syncWaiters.splice(0)) w();
    }
    this.#o.log.debug(`${this.resource}: listed ${fresh.size} at version ${version}`);
    return version;
  }

  async #watch(from: string): Promise<{ version: string; watchdog: boolean }> {
    const path = collectionPath(this.#o.resource, this.#o.namespace);
    const abort = new AbortController();
    const onStop = () => abort.abort();
    this.#stop.signal.addEventListener('abort', onStop, { once: true });
    let version = from;
    let gone = false;
    let failure: Error | undefined;
    let watchdog = false;
    let events = 0;
    const started = this.#o.clock.now();
    let cancelWatchdog = () => {};
    const armWatchdog = () => {
      cancelWatchdog();
      cancelWatchdog = this.#o.clock.setTimer(this.#o.watchdogMs, () => {
        watchdog = true;
        this.#o.log.warn(`${this.resource}: no watch event for ${this.#o.watchdogMs} ms; relisting`);
        abort.abort();
      });
    };
    armWatchdog();
    const onEvent = (e: WatchEvent) => {
      if (abort.signal.aborted) return;
      events++;
      armWatchdog();
      const obj = e.object as unknown as T;
      switch (e.type) {
        case 'ADDED':
        case 'MODIFIED': {
          const key = keyOf(obj);
          const before = this.#items.get(key);
          this.#items.set(key, obj);
          if (before) this.#emit('update', obj, before);
          else this.#emit('add', obj);
          break;
        }
        case 'DELETED': {
          const key = keyOf(obj);
          const before = this.#items.get(key);
          this.#items.delete(key);
          this.#emit('delete', before ?? obj);
          break;
        }
        case 'BOOKMARK':
          break;
        case 'ERROR': {
          const status = e.object as { code?: number; message?: string };
          if (status.code === 410) gone = true;
          else failure = new Error(`watch error ${status.code}: ${status.message ?? 'no message'}`);
          abort.abort();
          return;
        }
      }
      version = obj.metadata?.resourceVersion ?? version;
    };
    try {
      await this.#o.client.stream(
        path,
        {
          ...this.#query(),
          watch: 'true',
          resourceVersion: from,
          allowWatchBookmarks: 'true',
          timeoutSeconds: this.#o.watchTimeoutSeconds,
        },
        onEvent,
        abort.signal,
      );
    } finally {
      cancelWatchdog();
      this.#stop.signal.removeEventListener('abort', onStop);
    }
    if (gone) throw new Gone();
    if (failure) throw failure;
    if (!watchdog && !this.#stop.signal.aborted && events === 0 && this.#o.clock.now() - started < 1000) {
      // client-go's "very short watch": a server or proxy that closes watches at once would
      // otherwise be hammered in a tight loop.
      throw new Error('very short watch: the server closed it at once without events');
    }
    return { version, watchdog };
  }

  #emit(kind: 'add' | 'update' | 'delete', obj: T, old?: T): void {
    for (const h of this.#handlers) {
      try {
        if (kind === 'add') h.add?.(obj);
        else if (kind === 'update') h.update?.(old as T, obj);
        else h.delete?.(obj);
      } catch (e) {
        this.#o.log.warn(`${this.resource}: event handler failed: ${(e as Error).message}`);
      }
    }
  }
}

/** Several informers of one resource (one per watched namespace) read as one store. */
export class MultiStore<T extends KubeObject> implements Store<T> {
  readonly #parts: readonly Store<T>[];
  constructor(parts: readonly Store<T>[]) {
    this.#parts = parts;
  }
  get(key: string): T | undefined {
    for (const p of this.#parts) {
      const v = p.get(key);
      if (v) return v;
    }
    return undefined;
  }
  list(): T[] {
    return this.#parts.flatMap((p) => p.list());
  }
}

/** A store over a fixed set of objects (tests, and reconcile of a single object). */
export class StaticStore<T extends KubeObject> implements Store<T> {
  readonly #items: Map<string, T>;
  constructor(items: readonly T[] = []) {
    this.#items = new Map(items.map((o) => [keyOf(o), o]));
  }
  get(key: string): T | undefined {
    return this.#items.get(key);
  }
  list(): T[] {
    return [...this.#items.values()];
  }
  set(obj: T): void {
    this.#items.set(keyOf(obj), obj);
  }
  delete(key: string): void {
    this.#items.delete(key);
  }
}
