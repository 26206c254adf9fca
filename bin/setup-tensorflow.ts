// `tilestream setup tensorflow [--gpu]` and nothing else: the same command definition as the full
// CLI (trainer/backend/native/cli.ts), loaded without the trainer and operator. The images' build
// stages run this with only trainer/backend/native/ copied in, so editing any other source does not
// invalidate their cached TensorFlow layer (a ≈ 3.3 GB download for the GPU build).
//   node bin/setup-tensorflow.ts setup tensorflow [--gpu]
import { Command } from 'commander';
import { registerSetupCommand } from '../trainer/backend/native/cli.ts';

const program = new Command('tilestream');
registerSetupCommand(program);
await program.parseAsync(process.argv);
