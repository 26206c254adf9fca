// Kubernetes Events on a StreamingTrainingJob (what `kubectl describe stj` shows). Best effort, as
// client-go's event broadcaster: a failed Event never fails or retries a reconcile, but it is
// retried in the background, because the reconcile that decided it will not decide it again (its
// status write has already landed). The retries stop when the leader's term ends.

import type { StreamingTrainingJob } from '../crds/index.ts';
import type { Clock } from './controller/clock.ts';
import { createObject } from './kube/api.ts';
import { ApiError, type KubeClient } from './kube/client.ts';
import { RESOURCES } from './kube/resources.ts';
import { rfc3339 } from './status/conditions.ts';

export interface EventRecorder {
  /** Never rejects. Resolves after the first try; a failed one is retried later (EVENT_RETRY). */
  record(
    stj: StreamingTrainingJob,
    type: 'Normal' | 'Warning',
    reason: string,
    message: string,
  ): Promise<void>;
}

export interface EventSource {
  /** `source.component` and `reportingComponent`. */
  component: string;
  /** The operator pod, `reportingInstance`. */
  instance: string;
}

export interface EventRecorderOptions {
  clock: Clock;
  /** Ends the retries (the leader's term). */
  signal?: AbortSignal;
  warn: (message: string, meta: Record<string, unknown>) => void;
}

/**
 * client-go tries an Event 12 times, 10 s apart. Here: 1 s doubling to 30 s, six tries in all
 * (about a minute), and at most 500 Events waiting so an API outage cannot grow memory unbounded.
 */
export const EVENT_RETRY = { tries: 6, firstDelayMs: 1000, maxDelayMs: 30_000, maxWaiting: 500 } as const;

/** Whether trying again may help: the API server was unreachable, busy or failing, not refusing. */
function retryable(e: unknown): boolean {
  if (!(e instanceof ApiError)) return true;
  return e.status === 429 || e.status >= 500;
}

export function apiEventRecorder(
  client: KubeClient,
  source: EventSource,
  o: EventRecorderOptions,
): EventRecorder {
  let waiting = 0;
  /** One try; on a retryable failure, schedules the next one and returns without waiting for it. */
  const send = async (event: EventBody, tries: number): Promise<void> => {
    const { namespace, name } = event.involvedObject;
    try {
      await createObject(client, RESOURCES.event, namespace, event);
      return;
    } catch (e) {
      if (o.signal?.aborted) return;
      const meta = { namespace, name, reason: event.reason, tries };
      const why = (e as Error).message;
      if (!retryable(e) || tries >= EVENT_RETRY.tries) {
        o.warn(`could not record event ${event.reason}; giving up after ${tries} tries: ${why}`, meta);
        return;
      }
      if (waiting >= EVENT_RETRY.maxWaiting) {
        o.warn(
          `could not record event ${event.reason}; dropped, ${waiting} Events already wait: ${why}`,
          meta,
        );
        return;
      }
      const delayMs = Math.min(EVENT_RETRY.firstDelayMs * 2 ** (tries - 1), EVENT_RETRY.maxDelayMs);
      o.warn(`could not record event ${event.reason}; trying again in ${delayMs} ms: ${why}`, meta);
      waiting++;
      void o.clock.sleep(delayMs, o.signal).then(() => {
        waiting--;
        if (!o.signal?.aborted) return send(event, tries + 1);
      });
    }
  };
  return {
    record(stj, type, reason, message) {
      const namespace = stj.metadata.namespace as string;
      const time = rfc3339(o.clock.now());
      return send(
        {
          apiVersion: 'v1',
          kind: 'Event',
          metadata: { generateName: `${stj.metadata.name}.`, namespace },
          involvedObject: {
            apiVersion: stj.apiVersion,
            kind: stj.kind,
            name: stj.metadata.name,
            namespace,
            uid: stj.metadata.uid,
            resourceVersion: stj.metadata.resourceVersion,
          },
          type,
          reason,
          // The API server caps Event messages at 1 KiB.
          message: message.length > 1024 ? `${message.slice(0, 1020)} …` : message,
          source: { component: source.component },
          reportingComponent: source.component,
          reportingInstance: source.instance,
          // Both stamps are the decision's time, also on a retry: the Event says when it happened.
          firstTimestamp: time,
          lastTimestamp: time,
          count: 1,
        },
        1,
      );
    },
  };
}

interface EventBody {
  apiVersion: 'v1';
  kind: 'Event';
  metadata: { generateName: string; namespace: string };
  involvedObject: {
    apiVersion: string;
    kind: string;
    name: string;
    namespace: string;
    uid: string | undefined;
    resourceVersion: string | undefined;
  };
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  source: { component: string };
  reportingComponent: string;
  reportingInstance: string;
  firstTimestamp: string;
  lastTimestamp: string;
  count: number;
}
