// The operator's re-check of the tenant policy before it creates a job's children. The API server's
// ValidatingAdmissionPolicy refuses a job outside the policy at admission; this catches what
// admission did not see: jobs created before the policy was installed or tightened, a binding an
// admin removed, or a cluster without the chart's admission objects. The rules are the admission
// policy's own (crds/v1alpha1/tenant-policy.ts), so both refuse with the same message.

import { policyFromConfigMap, policyViolations, type StreamingTrainingJob } from '../crds/index.ts';
import { isNotFound, type KubeClient } from './kube/client.ts';

/**
 * undefined when the job may run (or no policy is configured); else why not. The ConfigMap is read
 * at each creation (once per attempt), so an admin's edit applies to the next attempt. A missing
 * ConfigMap refuses, as the admission policy's binding does (parameterNotFoundAction: Deny).
 */
export async function tenantPolicyRefusal(
  client: KubeClient,
  ref: { namespace: string; name: string } | undefined,
  stj: StreamingTrainingJob,
): Promise<string | undefined> {
  if (ref === undefined) return undefined;
  let cm: { metadata?: { namespace?: string; name?: string }; data?: Record<string, string> };
  try {
    cm = await client.request('GET', `/api/v1/namespaces/${ref.namespace}/configmaps/${ref.name}`);
  } catch (e) {
    if (!isNotFound(e)) throw e;
    return `the tenant policy refuses every job: its ConfigMap ${ref.namespace}/${ref.name} does not exist`;
  }
  const violations = policyViolations(stj.spec, policyFromConfigMap(cm));
  return violations.length === 0 ? undefined : `the tenant policy refuses this job: ${violations.join('; ')}`;
}
