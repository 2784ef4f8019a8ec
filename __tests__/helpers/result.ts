// A delivery's result as deliver() returns it, for tests of what the shells make of one.
import type { DeliveryResult } from '../../src/core/deliver.js';

export function deliveryResult(over: Partial<DeliveryResult> = {}): DeliveryResult {
  return {
    ok: true,
    image: 'img:1',
    imageDigest: 'sha256:abc',
    jobId: '77',
    jobState: 'COMPLETED',
    exitCode: 0,
    sifPath: '/home/u/rs/sif/abc.sif',
    sifReused: false,
    publishedPath: null,
    node: 'gpu-01',
    remoteDir: '/home/u/rs',
    timings: [{ phase: 'upload', seconds: 1.5 }],
    outputTail: ['ok'],
    bytesSent: 10,
    bytesTotal: 100,
    reconnects: 0,
    remoteCalls: { connections: 1, commands: 5 },
    gpu: null,
    buildCpus: null,
    message: 'The smoke test passed.',
    error: null,
    ...over,
  };
}
