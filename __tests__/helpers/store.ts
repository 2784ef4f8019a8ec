// For tests of the store: the parameters of a prepare (store-prepare.sh) and whether this machine
// has zstd.
import { spawnSync } from 'node:child_process';
import type { PrepareParams } from '../../src/core/store.js';

/** Whether this machine has a zstd command (Node 20 has none of its own): the store reports it and receives zstd with it. */
export const HAS_ZSTD = spawnSync('zstd', ['--version']).status === 0;

/** A fresh private store under `rd`, delivering one image, nothing published; a test overrides what it is about. */
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
