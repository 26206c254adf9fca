// Run by select.test.ts in a fresh process (a process holds one TensorFlow context, created with the
// thread counts of the moment): initBackend() as the trainer calls it, with the environment the test
// gives, then one JSON line on stdout with the BackendInfo and what TensorFlow actually started.
import { readdirSync, readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../trainer/backend/select.ts';

const info = await initBackend();
const result: Record<string, unknown> = {
  info,
  tensorflowRegistered: tf.findBackendFactory('tensorflow') !== null,
};

if (info.name === 'tensorflow') {
  // A convolution makes TensorFlow start its thread pools. Linux threads inherit the name of the
  // thread that creates them: TensorFlow's intra-op pool shows as Node's "MainThread" (one more than
  // Node's own), its inter-op pool as "tf_Compute".
  tf.tidy(() =>
    tf
      .conv2d(tf.ones([1, 32, 32, 4]) as tf.Tensor4D, tf.ones([3, 3, 4, 4]) as tf.Tensor4D, 1, 'same')
      .dataSync(),
  );
  const names = readdirSync('/proc/self/task').map((t) =>
    readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim(),
  );
  const count = (n: string) => names.filter((m) => m === n).length;
  result.pools = { intraOp: count('MainThread') - 1, interOp: count('tf_Compute') };

  // A kernel that TensorFlow itself fails (the filter's 3 input channels do not divide the input's
  // 4; the op's JavaScript checks are bypassed) must reject tf.profile with TensorFlow's message.
  try {
    await tf.profile(
      () =>
        tf
          .engine()
          .runKernel(
            'Conv2D',
            { x: tf.ones([1, 4, 4, 4]), filter: tf.ones([1, 1, 3, 2]) },
            { strides: 1, pad: 'valid', dataFormat: 'NHWC', dilations: 1 },
          ) as tf.Tensor,
    );
    result.profiledError = null;
  } catch (e) {
    result.profiledError = String(e);
  }
}
process.stdout.write(`${JSON.stringify(result)}\n`);
