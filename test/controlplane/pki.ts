// Certificates for the test control plane, minted with the openssl CLI (Node can parse but not
// issue X.509). One CA signs the API server's serving cert and every client cert: the tests need
// distinct identities (admin, controllers, one per fake node), not distinct trust roots.
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface CertFiles {
  certPath: string;
  keyPath: string;
}

export interface Pki {
  dir: string;
  caCertPath: string;
  caKeyPath: string;
  /** Serving cert of kube-apiserver (SANs: localhost, 127.0.0.1, the kubernetes service names). */
  serving: CertFiles;
  /** Service-account token signing key pair (PKCS#8 private, SPKI public). */
  saKeyPath: string;
  saPubPath: string;
  /** Mints (or returns the already minted) client cert for a user name and groups. */
  clientCert(user: string, groups?: readonly string[]): CertFiles;
}

const CURVE = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
// The plane lives for one test file; two days also covers a clock that is off by hours.
const DAYS = '2';

function openssl(args: string[]): void {
  try {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new Error(`openssl ${args.slice(0, 2).join(' ')} failed: ${stderr || String(err)}`);
  }
}

/** True when the openssl CLI (3.x: `req -x509 -CA` signs in one step) is on PATH. */
export function opensslAvailable(): boolean {
  try {
    const v = execFileSync('openssl', ['version'], { encoding: 'utf8' });
    const major = Number(/OpenSSL (\d+)\./.exec(v)?.[1] ?? 0);
    return major >= 3;
  } catch {
    return false;
  }
}

// Subject components are '/'-separated; names with '/' or '\' would need escaping, which no
// Kubernetes identity we mint uses.
function subject(cn: string, orgs: readonly string[]): string {
  for (const part of [cn, ...orgs]) {
    if (/[/\\]/.test(part)) throw new Error(`certificate subject part '${part}' must not contain / or \\`);
  }
  return `${orgs.map((o) => `/O=${o}`).join('')}/CN=${cn}`;
}

function fileSafe(name: string): string {
  return name.replace(/[^A-Za-z0-9_.-]/g, '_');
}

export function createPki(dir: string): Pki {
  const caCertPath = join(dir, 'ca.crt');
  const caKeyPath = join(dir, 'ca.key');
  openssl([
    'req',
    '-x509',
    '-new',
    '-nodes',
    ...CURVE,
    '-keyout',
    caKeyPath,
    '-out',
    caCertPath,
    '-days',
    DAYS,
    '-subj',
    '/CN=tilestream-test-ca',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
  ]);

  const leaf = (name: string, subj: string, ext: string[]): CertFiles => {
    const certPath = join(dir, `${name}.crt`);
    const keyPath = join(dir, `${name}.key`);
    openssl([
      'req',
      '-x509',
      '-new',
      '-nodes',
      ...CURVE,
      '-keyout',
      keyPath,
      '-out',
      certPath,
      '-days',
      DAYS,
      '-subj',
      subj,
      '-CA',
      caCertPath,
      '-CAkey',
      caKeyPath,
      '-addext',
      'basicConstraints=critical,CA:FALSE',
      '-addext',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      ...ext.flatMap((e) => ['-addext', e]),
    ]);
    return { certPath, keyPath };
  };

  const serving = leaf('apiserver', '/CN=kube-apiserver', [
    'extendedKeyUsage=serverAuth',
    'subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.0.0.1',
  ]);

  // The SA signer is a bare key pair: kube-apiserver takes PKCS#8 / SPKI PEM.
  const sa = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const saKeyPath = join(dir, 'sa.key');
  const saPubPath = join(dir, 'sa.pub');
  writeFileSync(saKeyPath, sa.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  writeFileSync(saPubPath, sa.publicKey.export({ type: 'spki', format: 'pem' }));

  const minted = new Map<string, CertFiles>();
  return {
    dir,
    caCertPath,
    caKeyPath,
    serving,
    saKeyPath,
    saPubPath,
    clientCert(user, groups = []) {
      const key = `${user}\u0000${groups.join(',')}`;
      const existing = minted.get(key);
      if (existing) return existing;
      const files = leaf(`client-${fileSafe(user)}-${minted.size}`, subject(user, groups), [
        'extendedKeyUsage=clientAuth',
      ]);
      minted.set(key, files);
      return files;
    },
  };
}

/** PEM file contents as base64, the form kubeconfig `*-data` fields take. */
export function pemBase64(path: string): string {
  return readFileSync(path).toString('base64');
}
