// Kubernetes Events on a StreamingTrainingJob (what `kubectl describe stj` shows). Best effort:
// a failed Event is logged, never a reason to fail or retry a reconcile.

import type { StreamingTrainingJob } from '../crds/index.ts';
import { createObject } from './kube/api.ts';
import type { KubeClient } from './kube/client.ts';
import { RESOURCES } from './kube/resources.ts';
import { rfc3339 } from './status/conditions.ts';

export interface EventRecorder {
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

export function apiEventRecorder(
  client: KubeClient,
  source: EventSource,
  now: () => number,
  warn: (message: string, meta: Record<string, unknown>) => void,
): EventRecorder {
  return {
    async record(stj, type, reason, message) {
      const namespace = stj.metadata.namespace as string;
      const time = rfc3339(now());
      const event = {
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
        firstTimestamp: time,
        lastTimestamp: time,
        count: 1,
      };
      try {
        await createObject(client, RESOURCES.event, namespace, event);
      } catch (e) {
        warn(`could not record event ${reason}: ${(e as Error).message}`, {
          namespace,
          name: stj.metadata.name,
        });
      }
    },
  };
}
