// Installs the StreamingTrainingJob CRD on a test control plane and waits until the API server
// serves it: the first step of every real-API-server suite that creates jobs.

import { CRD_FILE } from '../../crds/generate.ts';
import type { ControlPlane } from './harness.ts';

export async function installCrd(plane: ControlPlane): Promise<void> {
  const applied = await plane.kubectl(['apply', '--server-side', '-f', CRD_FILE]);
  if (applied.code !== 0) throw new Error(`the API server refused the CRD:\n${applied.stderr}`);
  const crd = 'crd/streamingtrainingjobs.tilestream.io';
  const ready = await plane.kubectl(['wait', '--for', 'condition=established', '--timeout=60s', crd]);
  if (ready.code !== 0) throw new Error(`the CRD did not become established:\n${ready.stderr}`);
}
