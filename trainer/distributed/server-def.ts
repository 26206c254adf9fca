// The tensorflow.ServerDef protobuf that turns on TensorFlow's collective ops for one rank, as
// bytes for TFE_EnableCollectiveOps. Encoded by hand: five fields of four small messages do not
// justify a protobuf library and its code generation, and the wire format for strings, varints and
// nested messages is a few lines. Field numbers are TensorFlow's (tensorflow_server.proto,
// cluster.proto, config.proto); they were read from the descriptors embedded in
// libtensorflow_framework.so.2 2.21 and TensorFlow parses these bytes in every collective test.

/** The job name MultiWorkerMirroredStrategy uses; device names become /job:worker/replica:0/task:r. */
export const JOB_NAME = 'worker';

/** TensorFlow's name of the task of `rank`. */
export function taskName(rank: number): string {
  return `/job:${JOB_NAME}/replica:0/task:${rank}`;
}

function varint(value: number): number[] {
  if (!Number.isInteger(value) || value < 0)
    throw new RangeError(`varint of ${value}: a non-negative integer is needed`);
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return out;
}

/** A length-delimited field (wire type 2): strings, bytes and embedded messages. */
function bytesField(field: number, bytes: Uint8Array | readonly number[]): number[] {
  return [...varint((field << 3) | 2), ...varint(bytes.length), ...bytes];
}

function stringField(field: number, value: string): number[] {
  return bytesField(field, new TextEncoder().encode(value));
}

/** A varint field (wire type 0); proto3 leaves zero values out. */
function varintField(field: number, value: number): number[] {
  return value === 0 ? [] : [...varint(field << 3), ...varint(value)];
}

export interface ServerDefInput {
  /** `host:port` of every task, index = task (rank); hosts already resolved to addresses. */
  readonly tasks: readonly string[];
  readonly taskIndex: number;
  /** Port this task's gRPC server listens on (the port of tasks[taskIndex]). */
  readonly port: number;
}

/**
 * ServerDef { cluster: ClusterDef { job: [JobDef { name, tasks: map<int32,string> }] }, job_name,
 * task_index, default_session_config: ConfigProto { experimental { collective_group_leader } },
 * protocol: 'grpc', port } — what tf.distribute's MultiWorkerMirroredStrategy hands to
 * context.enable_collective_ops. The group leader (task 0) is where the ranks agree on a group's
 * membership and device order before the first collective.
 */
export function encodeServerDef(input: ServerDefInput): Uint8Array {
  const { tasks, taskIndex, port } = input;
  if (taskIndex < 0 || taskIndex >= tasks.length) {
    throw new RangeError(`task index ${taskIndex} is outside the ${tasks.length} tasks`);
  }
  const taskEntries = tasks.flatMap((address, index) =>
    // map<int32, string> is a repeated entry message { key = 1; value = 2 }.
    bytesField(2, [...varintField(1, index), ...stringField(2, address)]),
  );
  const jobDef = [...stringField(1, JOB_NAME), ...taskEntries];
  const clusterDef = bytesField(1, jobDef);
  const experimental = stringField(1, taskName(0)); // collective_group_leader = 1
  const configProto = bytesField(16, experimental); // ConfigProto.experimental = 16
  return Uint8Array.from([
    ...bytesField(1, clusterDef),
    ...stringField(2, JOB_NAME),
    ...varintField(3, taskIndex),
    ...bytesField(4, configProto),
    ...stringField(5, 'grpc'),
    ...varintField(6, port),
  ]);
}
