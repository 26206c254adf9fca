// Whether the tensorflow-backend suites can run: `npm test` builds the native backend before the
// suites start (test/prepare.ts runs `tilestream setup tensorflow`); when it could not (no compiler,
// no pip), these suites skip with the reason, and fail under TILESTREAM_REQUIRE_ALL=1.
import { locateBuilds } from '../trainer/backend/native/builds.ts';
import { skipUnlessRequired } from './require-all.ts';

/** node:test `skip` value for a suite on the tensorflow backend. */
export function tensorflowSkip(): string | undefined {
  return skipUnlessRequired(
    locateBuilds().length > 0
      ? undefined
      : "the native TensorFlow backend is not built here (run 'npx tilestream setup tensorflow'; npm test tries it first and prints why it could not)",
  );
}
