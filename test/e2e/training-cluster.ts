// What both end-to-end suites stand on: the synthetic dataset on the host, the CRD, the four
// standard fake GPU classes and the node agent that runs trainer pods as local processes.
import { fileURLToPath } from 'node:url';
import { ensureSyntheticDataset } from '../../trainer/data/synthetic.ts';
import { registerFakeGpuNodes } from '../controlplane/fake-gpu-nodes.ts';
import { type FakeGpuClass, STANDARD_GPU_CLASSES } from '../controlplane/gpu-node-spec.ts';
import type { ControlPlane } from '../controlplane/harness.ts';
import { installCrd } from '../controlplane/install-crd.ts';
import { type NodeAgent, startNodeAgent } from '../controlplane/node-agent.ts';
import { SYNTHETIC } from './tiny-job.ts';

/** The trainer image's entrypoint under the node agent (maps in-pod paths; see pod-trainer.ts). */
export const POD_TRAINER = fileURLToPath(new URL('./pod-trainer.ts', import.meta.url));

export interface TrainingCluster {
  nodes: Awaited<ReturnType<typeof registerFakeGpuNodes>>;
  agent: NodeAgent;
  stop(): Promise<void>;
}

/**
 * `imageCommands`: image → the command the agent runs for it (e.g. [node, POD_TRAINER, …]).
 * `extraClasses`: GPU classes registered (and run by the agent) besides the four standard ones.
 */
export async function startTrainingCluster(
  plane: ControlPlane,
  dataDir: string,
  imageCommands: Record<string, string[]>,
  opts: { extraClasses?: readonly FakeGpuClass[] } = {},
): Promise<TrainingCluster> {
  await ensureSyntheticDataset(dataDir, { height: 192, width: 192, ...SYNTHETIC });
  await installCrd(plane);
  const classes = [...STANDARD_GPU_CLASSES, ...(opts.extraClasses ?? [])];
  const nodes = await registerFakeGpuNodes(plane.kubeConfig, classes, {
    kubeConfigForNode: (n) => plane.nodeKubeConfig(n),
  });
  const agent = await startNodeAgent(plane.kubeConfig, nodes.names, {
    kubeConfigForNode: plane.nodeKubeConfig,
    imageCommands,
    restartDelayMs: 200,
  });
  return {
    nodes,
    agent,
    async stop() {
      await agent.stop();
      await nodes.stop();
    },
  };
}
