// Assembles the `tilestream` command: the trainer's subcommands and `operator`. The operator module
// registers its flags only; controller code loads when `tilestream operator` runs, so trainer pods
// never load it.
import { registerOperatorCommand } from '../operator/cli.ts';
import { buildProgram } from '../trainer/cli.ts';

const program = buildProgram();
registerOperatorCommand(program);
await program.parseAsync(process.argv);
