// A `tilestream` with only the planner's commands, for test/plan/cli.test.ts (the real entry adds
// them in trainer/cli.ts).
import { Command } from 'commander';
import { registerPlanCommands } from '../../trainer/plan/cli.ts';
import { registerBenchMemory } from '../../trainer/plan-measure/cli.ts';

const program = new Command('tilestream');
registerPlanCommands(program);
registerBenchMemory(program.command('bench'));
await program.parseAsync(process.argv);
