// The parameters of a store prepare (store-prepare.sh) for tests: a fresh private store under
// `rd`, delivering one image, nothing published; a test overrides what it is about.
import type { PrepareParams } from '../../src/core/store.js';

export function prepareParams(over: Partial<PrepareParams> = {}): PrepareParams {
  return {
    remoteDir: 'rd',
    tmpdir: 'tmp',
    group: null,
    imageHex: 'e'.repeat(64),
    blobHexes: [],
    reuse: true,
    publishDir: null,
    publishMode: null,
    publishGroup: null,
    existingSif: null,
    run: '20261127-120000-abcdef',
    ...over,
  };
}
