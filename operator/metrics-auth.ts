// Authenticated and authorised /metrics, as controller-runtime's metrics filter
// (filters.WithAuthenticationAndAuthorization) does: the scraper sends a bearer token, a
// TokenReview says whose it is, and a SubjectAccessReview asks whether that user may `get` the
// non-resource URL /metrics (the chart's <release>-metrics-reader ClusterRole grants it). Answers
// are cached briefly, as the API server's delegating authenticator and authorizer do, so that a
// scrape every 30 s costs two API calls per token per minute at most.

import type { IncomingMessage } from 'node:http';
import type { KubeClient } from './kube/client.ts';

export type AuthVerdict = { ok: true } | { ok: false; status: 401 | 403; message: string };

export interface MetricsAuthOptions {
  /** How long a verdict for one token is kept. */
  allowTtlMs?: number;
  denyTtlMs?: number;
  now?: () => number;
}

interface TokenReview {
  status?: {
    authenticated?: boolean;
    user?: { username?: string; uid?: string; groups?: string[] };
    error?: string;
  };
}
interface SubjectAccessReview {
  status?: { allowed?: boolean; reason?: string };
}

/** A check for each /metrics request; 401 without a valid token, 403 when RBAC does not allow it. */
export function metricsAuthorizer(
  client: KubeClient,
  o: MetricsAuthOptions = {},
): (req: IncomingMessage, path: string) => Promise<AuthVerdict> {
  const allowTtl = o.allowTtlMs ?? 60_000;
  const denyTtl = o.denyTtlMs ?? 10_000;
  const now = o.now ?? Date.now;
  const cache = new Map<string, { verdict: AuthVerdict; until: number }>();

  async function review(token: string, path: string): Promise<AuthVerdict> {
    const tr = await client.request<TokenReview>('POST', '/apis/authentication.k8s.io/v1/tokenreviews', {
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } },
    });
    const user = tr.status?.user;
    if (!tr.status?.authenticated || !user?.username) {
      return { ok: false, status: 401, message: 'Unauthorized: the bearer token is not valid' };
    }
    const sar = await client.request<SubjectAccessReview>(
      'POST',
      '/apis/authorization.k8s.io/v1/subjectaccessreviews',
      {
        body: {
          apiVersion: 'authorization.k8s.io/v1',
          kind: 'SubjectAccessReview',
          spec: {
            user: user.username,
            ...(user.uid !== undefined && { uid: user.uid }),
            groups: user.groups ?? [],
            nonResourceAttributes: { path, verb: 'get' },
          },
        },
      },
    );
    if (!sar.status?.allowed) {
      return {
        ok: false,
        status: 403,
        message: `Forbidden: user "${user.username}" may not get ${path}${sar.status?.reason ? ` (${sar.status.reason})` : ''}`,
      };
    }
    return { ok: true };
  }

  return async (req, path) => {
    const header = req.headers.authorization ?? '';
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    if (!m) return { ok: false, status: 401, message: 'Unauthorized: send a bearer token' };
    const key = `${m[1]}\u0000${path}`;
    const t = now();
    const hit = cache.get(key);
    if (hit && hit.until > t) return hit.verdict;
    // An API error is not cached and not the scraper's fault: 503 would hide it; let it surface as 500.
    const verdict = await review(m[1] as string, path);
    if (cache.size > 1000) cache.clear();
    cache.set(key, { verdict, until: t + (verdict.ok ? allowTtl : denyTtl) });
    return verdict;
  };
}
