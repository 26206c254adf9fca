// `tilestream setup openslide` and nothing else: the same command definition as the full CLI
// (trainer/data/slide/setup-cli.ts), loaded without the trainer and operator, so an image build
// stage needs only trainer/data/slide/{setup-cli,openslide-setup,openslide-lib,openslide}.ts.
//   node bin/setup-openslide.ts setup openslide
import { Command } from 'commander';
import { registerOpenslideSetup } from '../trainer/data/slide/setup-cli.ts';

const program = new Command('tilestream');
registerOpenslideSetup(program.command('setup'));
await program.parseAsync(process.argv);
