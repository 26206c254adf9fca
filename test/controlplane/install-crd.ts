// Installs the StreamingTrainingJob CRD on a test control plane and waits until the API server
// serves it: the first step of every real-API-server suite that creates jobs.

import { setTimeout as sleep } from 'node:timers/promises';
import { CRD_FILE } from '../../crds/generate.ts';
import type { ControlPlane } from './harness.ts';

export async function installCrd(plane: ControlPlane): Promise<void> {
  const applied = await plane.kubectl(['apply', '--server-side', '-f', CRD_FILE]);
  if (applied.code !== 0) throw new Error(`the API server refused the CRD:\n${applied.stderr}`);
  const crd = 'crd/streamingtrainingjobs.tilestream.io';
  // kubectl wait can fail at once with ".status.conditions accessor error" when it reads the CRD
  // before the API server has written its first status (seen in two runs out of many), so it is
  // asked again until the deadline rather than trusted on its first answer.
  const deadline = Date.now() + 60_000;
  for (;;) {
    const ready = await plane.kubectl(['wait', '--for', 'condition=established', '--timeout=15s', crd]);
    if (ready.code === 0) return;
    if (Date.now() > deadline)
      throw new Error(`the CRD did not become established within 60 s:\n${ready.stderr}`);
    await sleep(250);
  }
}
