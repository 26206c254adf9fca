// The YAML documents of examples/*.yaml, read the way kubectl reads them (every document of every
// file), for test/examples/examples.test.ts. Pure apart from reading the files.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';

export const EXAMPLES_DIR = join(import.meta.dirname, '..', '..', 'examples');

/** A Kubernetes object as written in an example; fields are checked where they are used. */
export interface ExampleObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  // biome-ignore lint/suspicious/noExplicitAny: each kind's spec is read field by field by the tests
  spec?: any;
}

export interface ExampleDoc {
  /** File name inside examples/. */
  file: string;
  /** 0-based position of the document in its file. */
  index: number;
  obj: ExampleObject;
}

/** Every *.yaml / *.yml file in examples/, sorted: a new example is picked up without editing a test. */
export function exampleFiles(): string[] {
  return readdirSync(EXAMPLES_DIR)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort();
}

/** Every non-empty document of a file; YAML errors throw with the file name. */
export function docsOf(file: string): ExampleDoc[] {
  const text = readFileSync(join(EXAMPLES_DIR, file), 'utf8');
  const parsed = parseAllDocuments(text, { uniqueKeys: true });
  const docs = Array.isArray(parsed) ? parsed : [];
  const errors = docs.flatMap((d) => d.errors);
  if (errors.length > 0) throw new Error(`examples/${file}: ${errors.map((e) => e.message).join('; ')}`);
  return docs
    .map((d) => d.toJS({ maxAliasCount: 100 }) as ExampleObject | null)
    .filter((o): o is ExampleObject => o !== null && o !== undefined)
    .map((obj, index) => ({ file, index, obj }));
}

export function allDocs(): ExampleDoc[] {
  return exampleFiles().flatMap(docsOf);
}

export const STJ_KIND = 'StreamingTrainingJob';
export const isJob = (d: ExampleDoc): boolean =>
  d.obj.kind === STJ_KIND && d.obj.apiVersion.startsWith('tilestream.io/');

/** group/version/kind, as discovery names it: `v1/PersistentVolumeClaim`, `kueue.x-k8s.io/v1beta2/LocalQueue`. */
export const gvk = (o: ExampleObject): string => `${o.apiVersion}/${o.kind}`;

/** The kinds of the examples that are cluster-scoped; every other kind is namespaced. */
export const CLUSTER_SCOPED = new Set([
  'v1/PersistentVolume',
  'v1/Namespace',
  'kueue.x-k8s.io/v1beta2/ResourceFlavor',
  'kueue.x-k8s.io/v1beta2/ClusterQueue',
]);

/** The namespace kubectl would put an object in (`default` when unset). */
export function namespaceOf(o: ExampleObject): string | undefined {
  if (CLUSTER_SCOPED.has(gvk(o))) return undefined;
  return o.metadata.namespace ?? 'default';
}

/** Finds the one object of a kind with a name (and namespace for namespaced kinds). */
export function findObject(
  docs: readonly ExampleDoc[],
  kind: string,
  name: string,
  namespace?: string,
): ExampleDoc | undefined {
  return docs.find(
    (d) =>
      d.obj.kind === kind &&
      d.obj.metadata.name === name &&
      (namespace === undefined || namespaceOf(d.obj) === namespace),
  );
}
