// Assembles the `tilestream` command from the trainer's subcommands (and, later, the operator's).
// Subcommands are registered here only once they work.
import { buildProgram } from '../trainer/cli.ts';

const program = buildProgram();
await program.parseAsync(process.argv);
