// `tilestream train`'s first decision: train in this process (one rank, or a rank process the
// launcher started), or start the job's ranks (trainer/distributed/launcher.ts).

import { loadJobFile } from '../../crds/validate.ts';
import { launchRanks, planLaunch } from '../distributed/launcher.ts';
import { podLayoutFromEnv, RANK_ENV, TopologyError } from '../distributed/topology.ts';
import { EXIT } from './exit-codes.ts';
import { runTrainCommand, type TrainOptions } from './run.ts';

/** Runs the job (or its ranks); returns the exit code. */
export async function trainOrLaunch(file: string, o: TrainOptions): Promise<number> {
  // A rank process: the launcher already decided.
  if (process.env[RANK_ENV] !== undefined) return runTrainCommand(file, o);
  const loaded = await loadJobFile(file);
  if (!loaded.ok) return runTrainCommand(file, o); // it reports the manifest's problems
  let plan: ReturnType<typeof planLaunch>;
  try {
    plan = planLaunch(loaded.job, podLayoutFromEnv(process.env));
  } catch (e) {
    process.stderr.write(`${file}: ${(e as Error).message}\n`);
    return EXIT.invalidInput;
  }
  if (plan.kind === 'single') return runTrainCommand(file, o);
  const say = (level: 'info' | 'warn' | 'error', message: string): void => {
    process.stderr.write(
      o.json || !process.stderr.isTTY
        ? `${JSON.stringify({ level, message, launcher: true, timestamp: new Date().toISOString() })}\n`
        : `[launcher] ${message}\n`,
    );
  };
  try {
    return await launchRanks(plan, {
      command: [process.execPath, ...process.execArgv, ...process.argv.slice(1)],
      env: process.env,
      say,
    });
  } catch (e) {
    say('error', (e as Error).message);
    return e instanceof TopologyError ? EXIT.invalidInput : EXIT.failure;
  }
}
