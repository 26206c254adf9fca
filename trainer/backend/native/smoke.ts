// Run by `tilestream setup tensorflow` in a child process before a build is called finished: loads
// the freshly built package from its staging folder, runs a convolution and its gradient on the
// 'tensorflow' backend, and prints the TensorFlow version. Usage: smoke.ts <build dir> <cpu|gpu>
import * as tf from '@tensorflow/tfjs-core';
import { NATIVE_BUILDS, type NativeVariant } from './builds.ts';
import { loadBuild } from './load.ts';

const [dir, variant] = process.argv.slice(2);
if (dir === undefined || (variant !== 'cpu' && variant !== 'gpu')) {
  process.stderr.write('usage: smoke.ts <build dir> <cpu|gpu>\n');
  process.exit(64);
}
loadBuild({ dir, spec: NATIVE_BUILDS[variant as NativeVariant] });
if (!(await tf.setBackend('tensorflow'))) throw new Error("the 'tensorflow' backend did not initialise");
const x = tf.ones([1, 5, 5, 2]) as tf.Tensor4D;
const w = tf.ones([3, 3, 2, 1]) as tf.Tensor4D;
// conv2d runs the code path that Node 24 broke (isNullOrUndefined); 18 = 3·3·2 ones.
const y = tf.conv2d(x, w, 1, 'valid');
const centre = (await y.data())[0];
if (centre !== 18) throw new Error(`conv2d of ones gave ${centre}, expected 18`);
const binding = (tf.backend() as unknown as { binding: { TF_Version: string } }).binding;
process.stdout.write(`TensorFlow ${binding.TF_Version}\n`);
