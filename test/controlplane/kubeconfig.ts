// Kubeconfig documents for the test control plane. JSON is valid YAML, so kubectl, helm and
// @kubernetes/client-node all read these files as written.

export interface KubeconfigUser {
  /** PEM client certificate + key (cert auth), or a bearer token. */
  clientCertificatePem?: string;
  clientKeyPem?: string;
  token?: string;
}

export interface KubeconfigInput {
  server: string;
  caPem: string;
  user: KubeconfigUser;
  userName: string;
  namespace?: string;
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');

/** One cluster, one user, one context (named `test`), selected as current. */
export function kubeconfigDocument(input: KubeconfigInput): string {
  const user: Record<string, string> = {};
  if (input.user.token !== undefined) user.token = input.user.token;
  if (input.user.clientCertificatePem !== undefined) {
    if (input.user.clientKeyPem === undefined) {
      throw new Error(`kubeconfig user ${input.userName}: a client certificate needs its key`);
    }
    user['client-certificate-data'] = b64(input.user.clientCertificatePem);
    user['client-key-data'] = b64(input.user.clientKeyPem);
  }
  if (Object.keys(user).length === 0) {
    throw new Error(`kubeconfig user ${input.userName}: give a client certificate or a token`);
  }
  const context: Record<string, string> = { cluster: 'test', user: input.userName };
  if (input.namespace) context.namespace = input.namespace;
  const doc = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      { name: 'test', cluster: { server: input.server, 'certificate-authority-data': b64(input.caPem) } },
    ],
    users: [{ name: input.userName, user }],
    contexts: [{ name: 'test', context }],
    'current-context': 'test',
    preferences: {},
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}
