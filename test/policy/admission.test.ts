// The tenant policy and the user roles on a real control plane, installed from the chart (helm
// template): a user holding only Kubernetes' `edit` role in a namespace creates StreamingTrainingJobs
// and the ValidatingAdmissionPolicy admits and refuses them as the admin's ConfigMap says, with the
// message the operator's own re-check gives; the user can change neither the policy nor a job's
// status. Trainer pods built by the operator are admitted in a namespace that enforces the
// restricted Pod Security Standard.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseAllDocuments, stringify } from 'yaml';
import type { StreamingTrainingJob, StreamingTrainingJobSpec } from '../../crds/index.ts';
import { policyFromConfigMap, policyViolations } from '../../crds/v1alpha1/tenant-policy.ts';
import {
  buildTrainerJob,
  DEFAULT_TRAINER_SETTINGS,
  defaultRequests,
} from '../../operator/children/trainer-job.ts';
import { buildTrainerServiceAccount } from '../../operator/children/trainer-rbac.ts';
import { ensureBinaries } from '../controlplane/binaries.ts';
import { type ControlPlane, DEFAULT_CONTROLLERS, startControlPlaneOrSkip } from '../controlplane/harness.ts';
import { installCrd } from '../controlplane/install-crd.ts';
import { waitFor } from '../controlplane/wait.ts';
import { edit, type Manifest, validManifest } from '../crds/invalid-manifests.ts';
import {
  customPodJob,
  DEFAULT_POLICY,
  HOSTPATH_POLICY,
  POLICY_CASES,
  SECRETS_POLICY,
  TRAINER_REPO,
} from './cases.ts';

const NS = 'tilestream-system';
const TEAM = 'team-a';
const RESTRICTED = 'team-restricted';
const RELEASE = 'ts';
const POLICY = `${RELEASE}-tilestream-tenant-policy`;
const chart = join(import.meta.dirname, '..', '..', 'helm', 'tilestream');

const helmFound = await ensureBinaries(['helm']);
// The status controller type-checks the policy's CEL against the CRD's schema.
const started = helmFound.ok
  ? await startControlPlaneOrSkip({
      controllers: [...DEFAULT_CONTROLLERS, 'validatingadmissionpolicy-status-controller'],
    })
  : { skip: helmFound.reason };
const plane: ControlPlane | undefined = started.plane;

// biome-ignore lint/suspicious/noExplicitAny: Kubernetes objects read field by field
type Obj = any;

let alice = '';
let bob = '';
let seq = 0;

async function kubectl(args: string[], opts: { input?: string; kubeconfig?: string } = {}) {
  assert.ok(plane);
  return plane.kubectl(args, opts);
}

let revision = 0;

/** A job with no volumes and the image `image`. */
function imageProbe(image: string): Manifest {
  const m = edit(validManifest(), { 'spec.image': image, 'spec.data.volume': undefined });
  return edit(m, { 'spec.checkpoint.volume': undefined });
}

/**
 * Writes the policy ConfigMap with one more allowed image unique to this revision, and waits until
 * the API server's policy informer has it (a job with that image is admitted): later verdicts are
 * the new policy's. Returns the data written.
 */
async function setPolicy(data: Record<string, string>): Promise<Record<string, string>> {
  const marker = `probe.invalid/revision-${++revision}:1`;
  const written = { ...data, allowedImages: `${data.allowedImages ?? ''}${marker}\n` };
  const cm = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: POLICY, namespace: NS },
    data: written,
  };
  const r = await kubectl(['apply', '-f', '-'], { input: JSON.stringify(cm) });
  assert.equal(r.code, 0, r.stderr);
  await waitFor(
    `policy revision ${revision} in force`,
    async () => (await dryRun(imageProbe(marker))) === '',
  );
  return written;
}

/** A server-side dry-run create as the admin: '' when admitted, else the message. */
async function dryRun(job: Manifest): Promise<string> {
  const m = structuredClone(job);
  m.metadata = { name: 'probe', namespace: TEAM };
  const r = await kubectl(['create', '--dry-run=server', '-f', '-'], { input: JSON.stringify(m) });
  return r.code === 0 ? '' : r.stderr;
}

/** Creates the job as `user`; '' when admitted, else the API server's message. */
async function createAs(user: string, job: Manifest, namespace = TEAM): Promise<string> {
  const m = structuredClone(job);
  m.metadata = { name: `job-${++seq}`, namespace };
  const r = await kubectl(['create', '-o', 'name', '-f', '-'], {
    input: JSON.stringify(m),
    kubeconfig: user,
  });
  return r.code === 0 ? '' : r.stderr;
}

async function canI(user: string, verb: string, resource: string, namespace: string, sub?: string) {
  const r = await kubectl(
    ['auth', 'can-i', verb, resource, '-n', namespace, ...(sub ? [`--subresource=${sub}`] : [])],
    { kubeconfig: user },
  );
  return r.stdout.trim() === 'yes';
}

describe('tenant policy on a real API server', { skip: started.skip }, () => {
  before(async () => {
    assert.ok(plane && helmFound.ok);
    await installCrd(plane);
    await plane.createNamespace(NS);
    await plane.createNamespace(TEAM);
    await plane.createNamespace(RESTRICTED, {
      'pod-security.kubernetes.io/enforce': 'restricted',
      'pod-security.kubernetes.io/enforce-version': 'latest',
    });
    const r = spawnSync(
      helmFound.bin.helm as string,
      [
        'template',
        RELEASE,
        chart,
        '--namespace',
        NS,
        '-s',
        'templates/tenant-policy.yaml',
        '-s',
        'templates/user-roles.yaml',
      ],
      { encoding: 'utf8', env: { ...process.env, HELM_CACHE_HOME: '/tmp/tilestream-helm-cache' } },
    );
    assert.equal(r.status, 0, r.stderr);
    // the chart's default policy is the one the cases call DEFAULT_POLICY
    const rendered = parseAllDocuments(r.stdout).map((d) => d.toJS() as Obj);
    const cm = rendered.find((o) => o?.kind === 'ConfigMap' && o.metadata.name === POLICY);
    assert.deepEqual(cm.data, DEFAULT_POLICY);
    const applied = await kubectl(['apply', '-f', '-'], { input: r.stdout });
    assert.equal(applied.code, 0, applied.stderr);
    alice = plane.kubeconfigFor('alice');
    bob = plane.kubeconfigFor('bob');
    for (const [user, role] of [
      ['alice', 'edit'],
      ['bob', 'view'],
    ] as const) {
      const b = await kubectl([
        'create',
        'rolebinding',
        `${user}-${role}`,
        `--clusterrole=${role}`,
        `--user=${user}`,
        '-n',
        TEAM,
      ]);
      assert.equal(b.code, 0, b.stderr);
    }
    const rb = await kubectl([
      'create',
      'rolebinding',
      'alice-edit',
      '--clusterrole=edit',
      '--user=alice',
      '-n',
      RESTRICTED,
    ]);
    assert.equal(rb.code, 0, rb.stderr);
    // The clusterrole-aggregation-controller fills edit/view with the chart's rules.
    await waitFor('edit aggregated', () =>
      canI(alice, 'create', 'streamingtrainingjobs.tilestream.io', TEAM),
    );
    await waitFor('view aggregated', () => canI(bob, 'list', 'streamingtrainingjobs.tilestream.io', TEAM));
  });

  after(async () => {
    await plane?.stop();
  });

  it('the policy type-checks against the CRD with no warnings', async () => {
    const vap: Obj = await waitFor('the policy type-checked', async () => {
      const r = await kubectl(['get', 'validatingadmissionpolicy', POLICY, '-o', 'json']);
      const v = JSON.parse(r.stdout);
      return (
        v.status?.observedGeneration === v.metadata.generation && v.status?.typeChecking !== undefined && v
      );
    });
    assert.deepEqual(vap.status.typeChecking.expressionWarnings ?? [], []);
  });

  it('an edit user: admitted and refused as the policy says, with the operator re-check message', async () => {
    let current: Record<string, string> | undefined;
    let written: Record<string, string> = {};
    for (const c of POLICY_CASES) {
      if (c.policy !== current) {
        written = await setPolicy(c.policy);
        current = c.policy;
      }
      const out = await createAs(alice, c.job);
      const expected = policyViolations(
        c.job.spec as StreamingTrainingJobSpec,
        policyFromConfigMap({ metadata: { namespace: NS, name: POLICY }, data: written }),
      );
      if (c.refusedAt.length === 0) assert.equal(out, '', `${c.name}: refused: ${out}`);
      else {
        assert.match(out, /ValidatingAdmissionPolicy .* denied request/, c.name);
        // The API server reports the first failing validation; it is the operator's first message.
        assert.ok(out.includes(expected[0] as string), `${c.name}:\n${out}\nexpected: ${expected[0]}`);
      }
    }
    await setPolicy(DEFAULT_POLICY);
  });

  it('the issue 15 job (checkpoint hostPath "/") is refused naming the field and the rule', async (t) => {
    const out = await createAs(
      alice,
      edit(validManifest(), { 'spec.checkpoint.volume': { hostPath: { path: '/' } } }),
    );
    t.diagnostic(out.trim());
    assert.match(
      out,
      /spec\.checkpoint\.volume\.hostPath: hostPath volumes are not allowed; the tenant policy \(ConfigMap tilestream-system\/ts-tilestream-tenant-policy, allowedVolumeKinds\) allows persistentVolumeClaim/,
    );
  });

  it('a tightened policy leaves admitted jobs editable outside spec (labels) but refuses spec edits', async () => {
    await setPolicy(HOSTPATH_POLICY);
    const job = edit(validManifest(), { 'spec.data.volume': { hostPath: { path: '/data/slides/a' } } });
    job.metadata = { name: 'before-tightening', namespace: TEAM };
    assert.equal(
      (await kubectl(['create', '-f', '-'], { input: JSON.stringify(job), kubeconfig: alice })).code,
      0,
    );
    await setPolicy(DEFAULT_POLICY);
    const label = await kubectl(['label', 'stj', 'before-tightening', 'team=a', '-n', TEAM], {
      kubeconfig: alice,
    });
    assert.equal(label.code, 0, label.stderr);
    const patch = await kubectl(
      ['patch', 'stj', 'before-tightening', '-n', TEAM, '--type=merge', '-p', '{"spec":{"image":"evil:1"}}'],
      { kubeconfig: alice },
    );
    assert.notEqual(patch.code, 0);
    assert.match(patch.stderr, /spec\.image: evil:1 is not an allowed trainer image/);
  });

  it('without its ConfigMap the policy refuses every job (fail closed)', async () => {
    assert.equal((await kubectl(['delete', 'configmap', POLICY, '-n', NS])).code, 0);
    const out = await waitFor('every job refused', async () => (await dryRun(validManifest())) || undefined);
    assert.match(out, /ValidatingAdmissionPolicy/);
    assert.match(await createAs(alice, validManifest()), /ValidatingAdmissionPolicy/);
    await setPolicy(DEFAULT_POLICY);
  });

  it('roles: edit creates and deletes jobs, view only reads; neither changes the policy or a status', async () => {
    const stj = 'streamingtrainingjobs.tilestream.io';
    assert.equal(await canI(alice, 'delete', stj, TEAM), true);
    assert.equal(await canI(alice, 'patch', stj, TEAM, 'status'), false);
    assert.equal(await canI(alice, 'create', stj, 'default'), false, 'edit is per namespace');
    assert.equal(await canI(alice, 'update', 'configmaps', NS), false);
    assert.equal(await canI(alice, 'delete', 'validatingadmissionpolicybindings', ''), false);
    assert.equal(await canI(bob, 'get', stj, TEAM), true);
    assert.equal(await canI(bob, 'get', stj, TEAM, 'status'), true);
    assert.equal(await canI(bob, 'create', stj, TEAM), false);
    assert.notEqual(await createAs(bob, validManifest()), '');
  });

  it('trainer pods are admitted under the restricted Pod Security Standard', async () => {
    // An admitted job, and the Job the operator would build for it: the Job controller's pod passes
    // PodSecurity admission in a namespace that enforces restricted.
    const m = edit(validManifest(), { 'spec.image': `${TRAINER_REPO}:0.1.0` });
    m.metadata = { name: 'restricted', namespace: RESTRICTED };
    const created = await kubectl(['create', '-o', 'json', '-f', '-'], {
      input: JSON.stringify(m),
      kubeconfig: alice,
    });
    assert.equal(created.code, 0, created.stderr);
    const stj = JSON.parse(created.stdout) as StreamingTrainingJob;
    const job = buildTrainerJob({
      stj,
      plan: { tileSize: 512, budgetBytes: 8 * 2 ** 30 },
      attempt: 0,
      tileReductions: 0,
      restartsBefore: 0,
      suspend: false,
      settings: { ...DEFAULT_TRAINER_SETTINGS, image: `${TRAINER_REPO}:0.1.0` },
    });
    const docs = [buildTrainerServiceAccount(stj), job].map((o) => stringify(o)).join('---\n');
    const r = await kubectl(['create', '-n', RESTRICTED, '-f', '-'], { input: docs });
    assert.equal(r.code, 0, r.stderr);
    await waitFor('the trainer pod', async () => {
      const pods = await kubectl([
        'get',
        'pods',
        '-n',
        RESTRICTED,
        '-l',
        `job-name=${job.metadata?.name}`,
        '-o',
        'name',
      ]);
      return pods.stdout.trim() !== '';
    });
    // And PodSecurity is really enforcing there: the same pod with a hostPath volume is refused.
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'hostpath', namespace: RESTRICTED },
      spec: {
        ...job.spec?.template.spec,
        volumes: [...(job.spec?.template.spec?.volumes ?? []), { name: 'node', hostPath: { path: '/' } }],
      },
    };
    const refused = await kubectl(['create', '--dry-run=server', '-f', '-'], { input: JSON.stringify(pod) });
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /violates PodSecurity "restricted:latest": .*hostPath/);
    const events = await kubectl(['get', 'events', '-n', RESTRICTED, '-o', 'json']);
    const failed = (JSON.parse(events.stdout).items as Obj[]).filter((e) => e.reason === 'FailedCreate');
    assert.deepEqual(
      failed.map((e) => e.message),
      [],
    );
  });

  it('a job without spec.resources.memory/cpu: its trainer pod is Burstable with the default requests', async () => {
    const m = edit(validManifest(), { 'spec.resources.memory': undefined });
    const spec = edit(m, { 'spec.resources.cpu': undefined });
    spec.metadata = { name: 'no-resources', namespace: TEAM };
    const created = await kubectl(['create', '-o', 'json', '-f', '-'], {
      input: JSON.stringify(spec),
      kubeconfig: alice,
    });
    assert.equal(created.code, 0, created.stderr);
    const stj = JSON.parse(created.stdout) as StreamingTrainingJob;
    const plan = {
      tileSize: 512,
      gpuClass: 'a100',
      resourceName: 'nvidia.com/gpu',
      selector: [{ key: 'nvidia.com/gpu.product', values: ['A100-SXM4-40GB'] }],
    };
    const job = buildTrainerJob({
      stj,
      plan,
      attempt: 0,
      tileReductions: 0,
      restartsBefore: 0,
      suspend: false,
      settings: { ...DEFAULT_TRAINER_SETTINGS, image: `${TRAINER_REPO}:0.1.0` },
    });
    const docs = [buildTrainerServiceAccount(stj), job].map((o) => stringify(o)).join('---\n');
    assert.equal((await kubectl(['create', '-n', TEAM, '-f', '-'], { input: docs })).code, 0);
    const pod: Obj = await waitFor('the trainer pod', async () => {
      const r = await kubectl([
        'get',
        'pods',
        '-n',
        TEAM,
        '-l',
        `job-name=${job.metadata?.name}`,
        '-o',
        'json',
      ]);
      return JSON.parse(r.stdout).items[0];
    });
    assert.equal(pod.status.qosClass, 'Burstable');
    const expected = defaultRequests(stj, plan);
    assert.deepEqual(pod.spec.containers[0].resources.requests, { ...expected, 'nvidia.com/gpu': '1' });
    assert.equal(pod.spec.containers[0].resources.limits.memory, undefined, 'no memory limit by default');
  });

  it('a customised trainer pod (spec.pod, issue 15 item 5) an admin allowed: admitted under restricted', async () => {
    // The edit user writes it; the admin's policy allows Secrets and the data-reader accounts.
    await setPolicy(SECRETS_POLICY);
    const m = edit(customPodJob(), { 'spec.image': `${TRAINER_REPO}:0.1.0`, 'spec.pod.volumes': undefined });
    // restricted forbids hostPath: the pod volumes an admin may allow there.
    const spec = edit(m, {
      'spec.pod.volumes': [
        { name: 'scratch', mountPath: '/scratch', readOnly: false, emptyDir: {} },
        { name: 'labels', mountPath: '/labels', configMap: { name: 'label-map' } },
        { name: 'creds', mountPath: '/var/run/creds', secret: { secretName: 'storage-creds' } },
      ],
      'spec.pod.nodeAffinity': undefined,
    });
    spec.metadata = { name: 'custom-pod', namespace: RESTRICTED };
    const created = await kubectl(['create', '-o', 'json', '-f', '-'], {
      input: JSON.stringify(spec),
      kubeconfig: alice,
    });
    assert.equal(created.code, 0, created.stderr);
    const stj = JSON.parse(created.stdout) as StreamingTrainingJob;
    const job = buildTrainerJob({
      stj,
      plan: { tileSize: 512, budgetBytes: 8 * 2 ** 30 },
      attempt: 0,
      tileReductions: 0,
      restartsBefore: 0,
      suspend: false,
      settings: { ...DEFAULT_TRAINER_SETTINGS, image: `${TRAINER_REPO}:0.1.0` },
    });
    const account = { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'data-reader-pathology' } };
    const docs = [account, buildTrainerServiceAccount(stj), job].map((o) => stringify(o)).join('---\n');
    const r = await kubectl(['create', '-n', RESTRICTED, '-f', '-'], { input: docs });
    assert.equal(r.code, 0, r.stderr);
    const pod: Obj = await waitFor('the customised trainer pod', async () => {
      const p = await kubectl([
        'get',
        'pods',
        '-n',
        RESTRICTED,
        '-l',
        `job-name=${job.metadata?.name}`,
        '-o',
        'json',
      ]);
      return JSON.parse(p.stdout).items[0];
    });
    assert.equal(pod.spec.serviceAccountName, 'data-reader-pathology');
    assert.deepEqual((pod.spec.containers[0].env as { name: string }[]).map((e) => e.name).slice(-3), [
      'LOG_LEVEL',
      'S3_ENDPOINT',
      'S3_SECRET',
    ]);
    // Under the chart's default policy the same job is refused at its Secret and its account.
    await setPolicy(DEFAULT_POLICY);
    const refused = await createAs(alice, spec, RESTRICTED);
    assert.match(refused, /spec\.pod\.volumes\[creds\]\.secret: secret volumes are not allowed/);
  });
});
