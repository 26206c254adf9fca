// The CustomResourceDefinition of StreamingTrainingJob as a plain object (apiextensions.k8s.io/v1).
// crds/generate.ts writes it as YAML; the schema inside is jobSchema without the JavaScript twins.

import type { JSONSchemaProps } from '../schema-builder.ts';
import { CRD_NAME, GROUP, KIND, LIST_KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION } from './names.ts';
import { jobSchema } from './schema.ts';

export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  jsonPath: string;
  description: string;
  priority?: number;
}

export const PRINTER_COLUMNS: readonly PrinterColumn[] = [
  { name: 'Phase', type: 'string', jsonPath: '.status.phase', description: 'Summary of the conditions.' },
  {
    name: 'Tile',
    type: 'integer',
    jsonPath: '.status.plan.tileSize',
    description: 'Planned tile side in pixels.',
  },
  {
    name: 'GPU',
    type: 'string',
    jsonPath: '.status.plan.gpuProduct',
    description: 'GPU product of the chosen class.',
  },
  {
    name: 'Saved',
    type: 'string',
    jsonPath: '.status.plan.memorySaved',
    description: 'Predicted GPU memory saved by streaming.',
  },
  {
    name: 'Progress',
    type: 'string',
    jsonPath: '.status.progress.percent',
    description: 'Fraction of the run done.',
  },
  {
    // The Running condition is always present once the operator has seen the job, and when False its
    // reason says why no trainer runs (NoGPUWithSufficientMemory, Suspended, DataNotFound, ...).
    name: 'Reason',
    type: 'string',
    jsonPath: ".status.conditions[?(@.type=='Running')].reason",
    description: "Why the trainer is or is not running: the Running condition's reason.",
  },
  { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp', description: 'Time since creation.' },
  {
    name: 'Epoch',
    type: 'integer',
    jsonPath: '.status.progress.epoch',
    description: 'Current epoch.',
    priority: 1,
  },
  {
    name: 'Loss',
    type: 'number',
    jsonPath: '.status.progress.loss',
    description: 'Recent training loss.',
    priority: 1,
  },
  {
    name: 'Ranks',
    type: 'string',
    jsonPath: '.status.distributed.ranks',
    description:
      'Ranks running of the world size: trainer pods running × ranks per pod (data-parallel jobs only).',
    priority: 1,
  },
  {
    name: 'Queue',
    type: 'string',
    jsonPath: '.spec.runPolicy.queueName',
    description: 'Kueue LocalQueue.',
    priority: 1,
  },
];

// Emitted key order, so the YAML reads like controller-gen output: what a node is, then its limits,
// then its children, then the CEL rules.
const KEY_ORDER = [
  'description',
  'type',
  'format',
  'x-kubernetes-int-or-string',
  'anyOf',
  'enum',
  'default',
  'minimum',
  'exclusiveMinimum',
  'maximum',
  'exclusiveMaximum',
  'minLength',
  'maxLength',
  'pattern',
  'minItems',
  'maxItems',
  'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys',
  'items',
  'maxProperties',
  'additionalProperties',
  'required',
  'properties',
  'x-kubernetes-validations',
];

function ordered(node: JSONSchemaProps): JSONSchemaProps {
  const rank = (k: string) => (KEY_ORDER.includes(k) ? KEY_ORDER.indexOf(k) : KEY_ORDER.length);
  const entries = Object.entries(node).sort(([a], [b]) => rank(a) - rank(b));
  return Object.fromEntries(
    entries.map(([k, v]) => {
      if (k === 'properties') {
        return [
          k,
          Object.fromEntries(Object.entries(v as object).map(([p, c]) => [p, ordered(c as JSONSchemaProps)])),
        ];
      }
      if (k === 'items' || k === 'additionalProperties') return [k, ordered(v as JSONSchemaProps)];
      return [k, v];
    }),
  ) as JSONSchemaProps;
}

/** The schema as the API server sees it: the JSON round-trip drops the rules' JavaScript `check` functions. */
export function openAPIV3Schema(): JSONSchemaProps {
  return ordered(JSON.parse(JSON.stringify(jobSchema)) as JSONSchemaProps);
}

export function buildCrd() {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: CRD_NAME,
      labels: { 'app.kubernetes.io/name': 'tilestream', 'app.kubernetes.io/component': 'crd' },
    },
    spec: {
      group: GROUP,
      names: {
        kind: KIND,
        listKind: LIST_KIND,
        plural: PLURAL,
        singular: SINGULAR,
        shortNames: [...SHORT_NAMES],
        categories: ['tilestream'],
      },
      scope: 'Namespaced',
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: PRINTER_COLUMNS,
          schema: { openAPIV3Schema: openAPIV3Schema() },
        },
      ],
    },
  };
}
