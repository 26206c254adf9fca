// The operator's one door to the Kubernetes API: raw JSON requests and watch streams over the
// authenticated undici dispatcher that @kubernetes/client-node builds from a KubeConfig. Raw JSON
// (not the generated typed clients) so that objects keep their wire form (timestamps as strings),
// server-side apply bodies go out exactly as written, and every call has a timeout.

import { HttpMethod, type KubeConfig, RequestContext } from '@kubernetes/client-node';
import { fetch } from 'undici';

/** The API server answered with a non-2xx status. `reason` is the Status reason (Conflict, NotFound, …). */
export class ApiError extends Error {
  override name = 'ApiError';
  readonly status: number;
  readonly reason: string | undefined;
  constructor(status: number, reason: string | undefined, message: string) {
    super(message);
    this.status = status;
    this.reason = reason;
  }
}

/**
 * The request never got an answer: it timed out, the connection failed, or the caller's signal
 * aborted it (a leader that lost its lease cancels the writes of its term).
 */
export class TransportError extends Error {
  override name = 'TransportError';
  readonly kind: TransportErrorKind;
  constructor(kind: TransportErrorKind, message: string) {
    super(message);
    this.kind = kind;
  }
}

export type TransportErrorKind = 'timeout' | 'network' | 'aborted';

export const isNotFound = (e: unknown): boolean => e instanceof ApiError && e.status === 404;
export const isConflict = (e: unknown): boolean => e instanceof ApiError && e.status === 409;
export const isGone = (e: unknown): boolean => e instanceof ApiError && e.status === 410;

export type Query = Record<string, string | number | boolean | undefined>;

export interface RequestOptions {
  query?: Query;
  body?: unknown;
  /** Default application/json; server-side apply uses application/apply-patch+yaml. */
  contentType?: string;
  /** Overrides the client's default timeout. */
  timeoutMs?: number;
  /** Ends the request early (TransportError 'aborted'), whatever its timeout. */
  signal?: AbortSignal;
}

export const CONTENT_TYPE = {
  json: 'application/json',
  mergePatch: 'application/merge-patch+json',
  apply: 'application/apply-patch+yaml',
} as const;

export interface KubeClientOptions {
  /** Per-request timeout for everything but watches; default 30 s. */
  timeoutMs?: number;
  /** Aborts every request and watch of this client (see withSignal). */
  signal?: AbortSignal;
}

/** A watch event as the API server streams it. */
export interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: Record<string, unknown>;
}

export class KubeClient {
  readonly #kc: KubeConfig;
  readonly #server: string;
  readonly #timeoutMs: number;
  readonly #signal: AbortSignal | undefined;

  constructor(kc: KubeConfig, opts: KubeClientOptions = {}) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) {
      throw new Error(
        'the kubeconfig has no current cluster; set KUBECONFIG or run in a pod (in-cluster config)',
      );
    }
    this.#kc = kc;
    this.#server = cluster.server.replace(/\/+$/, '');
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
    this.#signal = opts.signal;
  }

  /**
   * The same client, with every request also ended by `signal`: a leader hands its reconciles a
   * client bound to its term, so losing the lease cancels their writes in flight.
   */
  withSignal(signal: AbortSignal): KubeClient {
    return new KubeClient(this.#kc, {
      timeoutMs: this.#timeoutMs,
      signal: this.#signal ? AbortSignal.any([this.#signal, signal]) : signal,
    });
  }

  get server(): string {
    return this.#server;
  }

  async #context(method: HttpMethod, path: string, query: Query | undefined): Promise<RequestContext> {
    const url = new URL(this.#server + path);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const ctx = new RequestContext(url.toString(), method);
    await this.#kc.applySecurityAuthentication(ctx);
    return ctx;
  }

  /** One request; resolves with the parsed JSON body, rejects with ApiError or TransportError. */
  async request<T>(method: keyof typeof HttpMethod, path: string, o: RequestOptions = {}): Promise<T> {
    const ctx = await this.#context(HttpMethod[method], path, o.query);
    const timeoutMs = o.timeoutMs ?? this.#timeoutMs;
    const headers: Record<string, string> = { ...ctx.getHeaders(), Accept: 'application/json' };
    if (o.body !== undefined) headers['Content-Type'] = o.contentType ?? CONTENT_TYPE.json;
    const timeout = AbortSignal.timeout(timeoutMs);
    const cancel = anySignal(o.signal, this.#signal);
    let res: Awaited<ReturnType<typeof fetch>>;
    let text: string;
    try {
      res = await fetch(ctx.getUrl(), {
        method,
        headers,
        dispatcher: ctx.getDispatcher(),
        signal: cancel ? AbortSignal.any([cancel, timeout]) : timeout,
        ...(o.body !== undefined && { body: JSON.stringify(o.body) }),
      });
      text = await res.text();
    } catch (e) {
      if (cancel?.aborted) throw abortedError(`${method} ${path}`, cancel);
      throw transportError(e, `${method} ${path}`, timeoutMs);
    }
    if (res.status >= 200 && res.status < 300) return (text === '' ? {} : JSON.parse(text)) as T;
    throw apiError(res.status, text, `${method} ${path}`);
  }

  /**
   * A watch (or any line-delimited JSON stream): calls onEvent per line until the server ends the
   * stream (resolves) or the signal aborts it (resolves). Rejects with ApiError on a non-200 answer.
   */
  async stream(
    path: string,
    query: Query,
    onEvent: (e: WatchEvent) => void,
    watchSignal: AbortSignal,
  ): Promise<void> {
    const signal = anySignal(watchSignal, this.#signal) as AbortSignal;
    const ctx = await this.#context(HttpMethod.GET, path, query);
    if (signal.aborted) return;
    // The timeout applies until the headers arrive; after that only `signal` (the watchdog) ends it.
    // fetch's signal also governs the body, so an AbortSignal.timeout there would cut every watch.
    const connect = new AbortController();
    const forward = () => connect.abort(signal.reason);
    signal.addEventListener('abort', forward, { once: true });
    try {
      await this.#read(path, ctx, connect, signal, onEvent);
    } finally {
      signal.removeEventListener('abort', forward);
    }
  }

  async #read(
    path: string,
    ctx: RequestContext,
    connect: AbortController,
    signal: AbortSignal,
    onEvent: (e: WatchEvent) => void,
  ): Promise<void> {
    const timer = setTimeout(
      () => connect.abort(new DOMException('no response headers in time', 'TimeoutError')),
      this.#timeoutMs,
    );
    let res: Awaited<ReturnType<typeof fetch>>;
    try {
      res = await fetch(ctx.getUrl(), {
        method: 'GET',
        headers: { ...ctx.getHeaders(), Accept: 'application/json' },
        dispatcher: ctx.getDispatcher(),
        signal: connect.signal,
      });
    } catch (e) {
      if (signal.aborted) return;
      throw transportError(e, `watch ${path}`, this.#timeoutMs);
    } finally {
      clearTimeout(timer);
    }
    if (res.status !== 200) throw apiError(res.status, await res.text().catch(() => ''), `watch ${path}`);
    if (!res.body) return;
    const decoder = new TextDecoder();
    let buffered = '';
    const reader = res.body.getReader();
    const abort = () => void reader.cancel().catch(() => undefined);
    signal.addEventListener('abort', abort, { once: true });
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buffered += decoder.decode(value, { stream: true });
        let nl = buffered.indexOf('\n');
        while (nl >= 0) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          if (line !== '') onEvent(JSON.parse(line) as WatchEvent);
          nl = buffered.indexOf('\n');
        }
      }
      const rest = buffered.trim();
      if (rest !== '') onEvent(JSON.parse(rest) as WatchEvent);
    } catch (e) {
      if (signal.aborted) return;
      throw transportError(e, `watch ${path}`, this.#timeoutMs);
    } finally {
      signal.removeEventListener('abort', abort);
    }
  }
}

function apiError(status: number, text: string, what: string): ApiError {
  let reason: string | undefined;
  let message = text.slice(0, 500);
  try {
    const s = JSON.parse(text) as { reason?: string; message?: string };
    reason = s.reason;
    if (s.message) message = s.message;
  } catch {
    // Not a Status object (a proxy's HTML page, say): keep the text.
  }
  return new ApiError(status, reason, `${what}: ${status}${reason ? ` ${reason}` : ''}: ${message}`);
}

function anySignal(...signals: (AbortSignal | undefined)[]): AbortSignal | undefined {
  const set = signals.filter((s): s is AbortSignal => s !== undefined);
  return set.length <= 1 ? set[0] : AbortSignal.any(set);
}

function abortedError(what: string, signal: AbortSignal): TransportError {
  const why = signal.reason instanceof Error ? signal.reason.message : String(signal.reason);
  return new TransportError('aborted', `${what}: cancelled: ${why}`);
}

function transportError(e: unknown, what: string, timeoutMs: number): TransportError {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  if (err.name === 'TimeoutError' || err.name === 'AbortError') {
    return new TransportError('timeout', `${what}: no answer within ${timeoutMs} ms`);
  }
  const detail = err.cause?.code ?? err.cause?.message ?? err.message;
  return new TransportError('network', `${what}: ${detail}`);
}
