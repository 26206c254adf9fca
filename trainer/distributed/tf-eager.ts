// The part of TensorFlow's C API the collective engine calls, bound with koffi to the libraries of
// the native build that `tilestream setup tensorflow` makes (the same files the tfjs addon links).
// Its own eager context, apart from the addon's, so the engine works whichever tfjs backend trains.
import { readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import koffi, { type LibraryHandle } from 'koffi';
import { type LocatedBuild, locateBuilds } from '../backend/native/builds.ts';
import { setTensorflowThreads } from '../backend/native/load.ts';

/** Opaque C pointers (TF_Status*, TFE_Context*, …) as koffi hands them over. */
export type Ptr = unknown;

type Fn = ((...args: unknown[]) => unknown) & {
  async: (...args: unknown[]) => void;
};

export interface TfApi {
  readonly build: LocatedBuild;
  NewStatus: Fn;
  DeleteStatus: Fn;
  GetCode: Fn;
  Message: Fn;
  SetStatus: Fn;
  NewContextOptions: Fn;
  DeleteContextOptions: Fn;
  NewContext: Fn;
  DeleteContext: Fn;
  EnableCollectiveOps: Fn;
  AbortCollectiveOps: Fn;
  CollectiveOpsCheckPeerHealth: Fn;
  ContextListDevices: Fn;
  DeviceListCount: Fn;
  DeviceListName: Fn;
  DeviceListType: Fn;
  DeleteDeviceList: Fn;
  NewOp: Fn;
  DeleteOp: Fn;
  OpSetDevice: Fn;
  OpAddInput: Fn;
  OpSetAttrType: Fn;
  OpSetAttrString: Fn;
  OpSetAttrFloat: Fn;
  OpSetAttrInt: Fn;
  Execute: Fn;
  AllocateTensor: Fn;
  TensorData: Fn;
  DeleteTensor: Fn;
  NewTensorHandle: Fn;
  DeleteTensorHandle: Fn;
  TensorHandleResolve: Fn;
}

/** TF_DataType values used here (tf_datatype.h). */
export const TF_FLOAT = 1;
export const TF_INT32 = 3;
/** TF_Code UNAVAILABLE (tf_status.h): what an abort of the collectives carries. */
export const TF_UNAVAILABLE = 14;

/** The native build is missing or does not load: the message says what to run. */
export class TensorflowUnavailableError extends Error {
  override readonly name = 'TensorflowUnavailableError';
}

let bound: TfApi | undefined;

/** The folder of a libtensorflow_cc.so.2 this process has already mapped (the tfjs addon's), if any. */
export function mappedTensorflowDir(maps?: string): string | undefined {
  let text = maps;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/maps', 'utf8');
    } catch {
      return undefined;
    }
  }
  return /\s(\/\S*)\/libtensorflow_cc\.so\.2$/m.exec(text)?.[1];
}

/**
 * The build whose libraries to bind: the one already loaded into this process when the trainer
 * runs on the tensorflow backend (two copies of TensorFlow in one process would register every
 * kernel twice), else the preferred one (the GPU build first, as the trainer prefers it).
 */
function chooseBuild(): LocatedBuild {
  const builds = locateBuilds();
  const mapped = mappedTensorflowDir();
  if (mapped !== undefined) {
    const same = builds.find((b) => {
      try {
        return realpathSync(join(b.dir, 'site', 'tensorflow')) === mapped;
      } catch {
        return false;
      }
    });
    if (same === undefined) {
      throw new TensorflowUnavailableError(
        `this process already loaded TensorFlow from ${mapped}, which is not a build of 'tilestream setup ` +
          "tensorflow'; the collective engine must use the same libraries (rebuild with 'tilestream setup tensorflow')",
      );
    }
    return same;
  }
  const build = builds[0];
  if (build === undefined) {
    throw new TensorflowUnavailableError(
      "the collective engine needs TensorFlow's native build, which is not set up; run " +
        "'tilestream setup tensorflow' (or 'tilestream setup tensorflow --gpu' on GPU nodes) first",
    );
  }
  return build;
}

/** Binds the C API of the chosen native build, once per process (the libraries stay mapped). */
export function tensorflowApi(): TfApi {
  if (bound !== undefined) return bound;
  const build = chooseBuild();
  // As for the tfjs addon (load.ts): thread pools from the CPU allowance, TensorFlow's INFO lines off.
  setTensorflowThreads();
  const dir = join(build.dir, 'site', 'tensorflow');
  let framework: LibraryHandle;
  let cc: LibraryHandle;
  try {
    framework = koffi.load(join(dir, 'libtensorflow_framework.so.2'));
    cc = koffi.load(join(dir, 'libtensorflow_cc.so.2'));
  } catch (e) {
    throw new TensorflowUnavailableError(
      `cannot load TensorFlow's libraries from ${dir}: ${(e as Error).message}. ` +
        "Run 'tilestream setup tensorflow' again to rebuild it.",
      { cause: e },
    );
  }
  const f = (lib: LibraryHandle, decl: string): Fn => lib.func(decl) as unknown as Fn;
  bound = {
    build,
    NewStatus: f(framework, 'void *TF_NewStatus()'),
    DeleteStatus: f(framework, 'void TF_DeleteStatus(void *s)'),
    GetCode: f(framework, 'int TF_GetCode(void *s)'),
    Message: f(framework, 'const char *TF_Message(void *s)'),
    SetStatus: f(framework, 'void TF_SetStatus(void *s, int code, const char *msg)'),
    NewContextOptions: f(cc, 'void *TFE_NewContextOptions()'),
    DeleteContextOptions: f(cc, 'void TFE_DeleteContextOptions(void *o)'),
    NewContext: f(cc, 'void *TFE_NewContext(void *opts, void *status)'),
    DeleteContext: f(cc, 'void TFE_DeleteContext(void *ctx)'),
    EnableCollectiveOps: f(
      cc,
      'void TFE_EnableCollectiveOps(void *ctx, const uint8_t *proto, size_t len, void *status)',
    ),
    AbortCollectiveOps: f(cc, 'void TFE_AbortCollectiveOps(void *ctx, void *status)'),
    CollectiveOpsCheckPeerHealth: f(
      cc,
      'void TFE_CollectiveOpsCheckPeerHealth(void *ctx, const char *task, int64_t timeout_ms, void *status)',
    ),
    ContextListDevices: f(cc, 'void *TFE_ContextListDevices(void *ctx, void *status)'),
    DeviceListCount: f(cc, 'int TF_DeviceListCount(void *list)'),
    DeviceListName: f(cc, 'const char *TF_DeviceListName(void *list, int i, void *status)'),
    DeviceListType: f(cc, 'const char *TF_DeviceListType(void *list, int i, void *status)'),
    DeleteDeviceList: f(cc, 'void TF_DeleteDeviceList(void *list)'),
    NewOp: f(cc, 'void *TFE_NewOp(void *ctx, const char *name, void *status)'),
    DeleteOp: f(cc, 'void TFE_DeleteOp(void *op)'),
    OpSetDevice: f(cc, 'void TFE_OpSetDevice(void *op, const char *device, void *status)'),
    OpAddInput: f(cc, 'void TFE_OpAddInput(void *op, void *h, void *status)'),
    OpSetAttrType: f(cc, 'void TFE_OpSetAttrType(void *op, const char *name, int value)'),
    OpSetAttrString: f(
      cc,
      'void TFE_OpSetAttrString(void *op, const char *name, const char *value, size_t len)',
    ),
    OpSetAttrInt: f(cc, 'void TFE_OpSetAttrInt(void *op, const char *name, int64_t value)'),
    OpSetAttrFloat: f(cc, 'void TFE_OpSetAttrFloat(void *op, const char *name, float value)'),
    Execute: f(
      cc,
      'void TFE_Execute(void *op, _Out_ void **retvals, _Inout_ int *num_retvals, void *status)',
    ),
    AllocateTensor: f(
      framework,
      'void *TF_AllocateTensor(int dtype, const int64_t *dims, int num_dims, size_t len)',
    ),
    TensorData: f(framework, 'void *TF_TensorData(void *t)'),
    DeleteTensor: f(framework, 'void TF_DeleteTensor(void *t)'),
    NewTensorHandle: f(cc, 'void *TFE_NewTensorHandle(void *t, void *status)'),
    DeleteTensorHandle: f(cc, 'void TFE_DeleteTensorHandle(void *h)'),
    TensorHandleResolve: f(cc, 'void *TFE_TensorHandleResolve(void *h, void *status)'),
  };
  return bound;
}

/** A TF_Status owned by one call site; `check` throws its message when it holds an error. */
export class Status {
  readonly ptr: Ptr;
  private readonly api: TfApi;
  constructor(api: TfApi) {
    this.api = api;
    this.ptr = api.NewStatus();
  }
  get code(): number {
    return this.api.GetCode(this.ptr) as number;
  }
  get message(): string {
    return (this.api.Message(this.ptr) as string | null) ?? '';
  }
  /** Throws `make(message)` when the last call failed. */
  check(what: string, make: (message: string) => Error = (m) => new Error(m)): void {
    if (this.code !== 0) throw make(`${what} failed (TensorFlow code ${this.code}): ${this.message}`);
  }
  delete(): void {
    this.api.DeleteStatus(this.ptr);
  }
}
