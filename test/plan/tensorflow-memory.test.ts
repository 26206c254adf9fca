// The reader of TensorFlow's allocation log (plan-measure/tensorflow-memory.ts) on hand-made
// lines in the formats TensorFlow 2.21 writes (protobuf debug strings, whose spacing varies from
// run to run on purpose). No TensorFlow needed.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AllocationLog } from '../../trainer/plan-measure/tensorflow-memory.ts';

const PREFIX = 'I0000 00:00:1796542729.428285    3437 log_memory.cc:34] __LOG_MEMORY__ ';
const alloc = (id: number, bytes: number, kernel = 'Relu', space = ' ') =>
  `${PREFIX}MemoryLogTensorAllocation { goo.gle/debugstr    kernel_name:${space}"${kernel}" tensor { dtype: DT_FLOAT shape { dim { size: 1 } } ` +
  `allocation_description { requested_bytes:${space}${bytes} allocated_bytes: ${bytes} allocator_name: "cpu" allocation_id:${space}${id} has_single_reference: true ptr: 514756608 } } }`;
const free = (id: number) =>
  `${PREFIX}MemoryLogTensorDeallocation { goo.gle/debugstr    allocation_id: ${id} allocator_name: "cpu" }`;
const rawAlloc = (id: number, bytes: number, operation: string) =>
  `${PREFIX}MemoryLogRawAllocation { goo.gle/debugonly  step_id: -3 operation: "${operation}" num_bytes: ${bytes} ptr: 1 allocation_id: ${id} allocator_name: "cpu" }`;
const rawFree = (id: number) =>
  `${PREFIX}MemoryLogRawDeallocation { goo.gle/debugonly  step_id: -3 operation: "TensorFlow C Api" allocation_id: ${id} allocator_name: "cpu" }`;

function read(lines: string[]): AllocationLog {
  const log = new AllocationLog();
  for (const l of lines) log.line(l);
  return log;
}

describe("TensorFlow's allocation log", () => {
  it('tensors are sampled between kernels; scratch freed inside a kernel counts only in the full peak', () => {
    const log = read([
      alloc(1, 1000, 'Before'), // held before the step: the baseline
      '__TSM__ k',
      '__TSM__ start 0',
      alloc(2, 400, 'Conv2D'),
      alloc(3, 5000, 'Conv2DBackpropFilter'), // scratch
      free(3),
      '__TSM__ k',
      alloc(4, 300, 'Relu'),
      '__TSM__ k',
      free(2),
      '__TSM__ k',
      free(4),
      '__TSM__ k',
      '__TSM__ end 0',
    ]);
    assert.deepEqual(log.results.get(0), { tensorPeakBytes: 700, peakBytes: 5400, leftoverBytes: 0 });
    assert.equal(log.unmatchedFrees, 0);
  });

  it("counts tensors copied in from JavaScript by the child's marks, not TF_NewTensor's own copies", () => {
    const log = read([
      '__TSM__ start 3',
      '__TSM__ u 800',
      rawAlloc(7, 800, 'TF_NewTensor'), // TensorFlow copied a misaligned buffer: already counted
      alloc(8, 100, 'Add'),
      '__TSM__ k',
      rawFree(7),
      '__TSM__ f 800',
      free(8),
      '__TSM__ k',
      '__TSM__ end 3',
    ]);
    assert.deepEqual(log.results.get(3), { tensorPeakBytes: 900, peakBytes: 900, leftoverBytes: 0 });
    assert.equal(log.unmatchedFrees, 0);
  });

  it('reads the debug strings whatever their spacing, and other raw allocations', () => {
    const log = read([
      '__TSM__ start 1',
      alloc(5, 64, 'Relu', '  '),
      rawAlloc(6, 32, 'SomeKernelScratch'),
      '__TSM__ k',
      '__TSM__ end 1',
    ]);
    assert.deepEqual(log.results.get(1), { tensorPeakBytes: 96, peakBytes: 96, leftoverBytes: 96 });
  });

  it('a free of a buffer never allocated means lost lines; the step that started last is known', () => {
    const log = read(['__TSM__ start 2', free(99), 'double free or corruption (!prev)']);
    assert.equal(log.unmatchedFrees, 1);
    assert.equal(log.lastStarted, 2);
    assert.equal(log.results.has(2), false);
  });
});
