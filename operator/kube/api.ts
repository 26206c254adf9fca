// The write operations the operator performs, on top of KubeClient: server-side apply of whole
// objects and of the status subresource, a merge patch, deletes that treat 404 as done, and Events.

import { API_VERSION, KIND, type StreamingTrainingJobStatus } from '../../crds/index.ts';
import { CONTENT_TYPE, isNotFound, type KubeClient } from './client.ts';
import { collectionPath, objectPath, RESOURCES, type ResourceType, resourceOf } from './resources.ts';
import type { KubeObject } from './types.ts';

/**
 * Server-side apply: the object as this field manager wants it. `force` takes over fields another
 * manager set (the operator is the only writer of its children).
 */
export async function applyObject<T extends KubeObject>(
  client: KubeClient,
  obj: { apiVersion?: string; kind?: string; metadata?: { name?: string; namespace?: string } },
  fieldManager: string,
): Promise<T> {
  const r = resourceOf(obj);
  const name = obj.metadata?.name;
  if (!name) throw new Error(`internal: cannot apply a ${obj.kind} without metadata.name`);
  return client.request<T>('PATCH', objectPath(r, obj.metadata?.namespace, name), {
    body: obj,
    contentType: CONTENT_TYPE.apply,
    query: { fieldManager, force: true },
  });
}

/**
 * Applies the operator's status fields of a StreamingTrainingJob. resourceVersion makes it
 * conditional: a 409 means the cache was stale, and the reconcile is retried on fresh data.
 */
export async function applyStjStatus(
  client: KubeClient,
  target: { namespace: string; name: string; resourceVersion?: string },
  status: Partial<StreamingTrainingJobStatus>,
  fieldManager: string,
): Promise<KubeObject> {
  const path = `${objectPath(RESOURCES.stj, target.namespace, target.name)}/status`;
  return client.request<KubeObject>('PATCH', path, {
    body: {
      apiVersion: API_VERSION,
      kind: KIND,
      metadata: {
        name: target.name,
        namespace: target.namespace,
        ...(target.resourceVersion !== undefined && { resourceVersion: target.resourceVersion }),
      },
      status,
    },
    contentType: CONTENT_TYPE.apply,
    query: { fieldManager, force: true },
  });
}

export async function mergePatch(
  client: KubeClient,
  r: ResourceType,
  namespace: string | undefined,
  name: string,
  patch: unknown,
  fieldManager: string,
): Promise<void> {
  await client.request('PATCH', objectPath(r, namespace, name), {
    body: patch,
    contentType: CONTENT_TYPE.mergePatch,
    query: { fieldManager },
  });
}

/** Deletes an object; false when it was already gone. */
export async function deleteObject(
  client: KubeClient,
  r: ResourceType,
  namespace: string | undefined,
  name: string,
  propagationPolicy: 'Background' | 'Foreground' | 'Orphan' = 'Background',
): Promise<boolean> {
  try {
    await client.request('DELETE', objectPath(r, namespace, name), {
      body: { apiVersion: 'v1', kind: 'DeleteOptions', propagationPolicy },
    });
    return true;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw e;
  }
}

export async function createObject<T>(
  client: KubeClient,
  r: ResourceType,
  namespace: string,
  obj: unknown,
): Promise<T> {
  return client.request<T>('POST', collectionPath(r, namespace), { body: obj });
}
