// The `archive` input, end to end: an image already saved as a tar, in the Docker 25+ dual
// (OCI + legacy) layout and in the pure OCI layout the containerd image store writes (nested index,
// attestation manifest, gzip layers), is delivered without Docker building or saving anything. The
// stand-in singularity reads only a legacy docker-archive (manifest.json's Config and Layers), so a
// passing smoke test proves the job reassembled the image in legacy layout from the store.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { gzipSync } from 'node:zlib';
import { listTar, readTarMember, type TarEntry } from '../../src/core/tar.js';
import { type TarFixtureEntry, writeTar } from '../helpers/tarfixture.js';
import { CLUSTER_HOME, type StepRun, clusterInputs, makeWorkspace, requireCluster, runStep, singularityCalls, uniqueRemoteDir } from './harness.js';

const SRC = 'rs-e2e/oci-src:v1';
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const INDEX = 'application/vnd.oci.image.index.v1+json';
const CONFIG = 'application/vnd.oci.image.config.v1+json';

const sha = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

interface Source {
  config: Buffer;
  configHex: string;
  /** Uncompressed layer tars, in order. */
  layers: Buffer[];
}

let ws: string;
let src: Source;
/** Docker 25+ dual layout, given to the action relative to the workspace. */
const DUAL_REL = 'archives/dual.tar';
let dualAbs: string;
/** Pure OCI layout (containerd image store), given as an absolute path (inside the workspace: archives outside it are refused). */
let ociAbs: string;
let gzipLayers: Buffer[];

/** A member's bytes, following the symlinks older `docker save` uses for repeated layers. */
async function member(path: string, entries: TarEntry[], name: string): Promise<Buffer> {
  const byName = new Map(entries.map((e) => [posix.normalize(e.name), e]));
  let key = posix.normalize(name);
  let e = byName.get(key);
  for (let hops = 0; e && e.type === 'symlink' && hops < 8; hops++) {
    key = posix.normalize(posix.join(posix.dirname(key), e.linkname));
    e = byName.get(key);
  }
  if (e?.type !== 'file') throw new Error(`no member ${name} in ${path}`);
  return readTarMember(path, e);
}

async function readLegacySave(path: string): Promise<Source> {
  const entries = await listTar(path);
  const manifest = JSON.parse((await member(path, entries, 'manifest.json')).toString()) as { Config: string; Layers: string[] }[];
  if (manifest.length !== 1) throw new Error(`docker save wrote ${manifest.length} images`);
  const config = await member(path, entries, manifest[0].Config);
  const layers = await Promise.all(manifest[0].Layers.map((l) => member(path, entries, l)));
  return { config, configHex: sha(config), layers };
}

const descriptor = (mediaType: string, data: Buffer, extra: object = {}) => ({ mediaType, digest: `sha256:${sha(data)}`, size: data.length, ...extra });
const blob = (data: Buffer): TarFixtureEntry => ({ name: `blobs/sha256/${sha(data)}`, data });
const json = (v: unknown) => Buffer.from(JSON.stringify(v));
const OCI_LAYOUT: TarFixtureEntry = { name: 'oci-layout', data: '{"imageLayoutVersion":"1.0.0"}' };
const NAME_ANNOTATIONS = { 'io.containerd.image.name': `docker.io/${SRC}`, 'org.opencontainers.image.ref.name': 'v1' };

/** What `docker save` writes with Docker 25+: an OCI layout that is also a legacy archive. */
function dualArchive(s: Source): TarFixtureEntry[] {
  const manifest = json({
    schemaVersion: 2,
    mediaType: MANIFEST,
    config: descriptor(CONFIG, s.config),
    layers: s.layers.map((l) => descriptor('application/vnd.oci.image.layer.v1.tar', l)),
  });
  return [
    { name: 'blobs/', type: 'dir' },
    { name: 'blobs/sha256/', type: 'dir' },
    blob(s.config),
    ...s.layers.map(blob),
    blob(manifest),
    { name: 'index.json', data: json({ schemaVersion: 2, mediaType: INDEX, manifests: [descriptor(MANIFEST, manifest, { annotations: NAME_ANNOTATIONS })] }) },
    {
      name: 'manifest.json',
      data: json([{ Config: `blobs/sha256/${s.configHex}`, RepoTags: [SRC], Layers: s.layers.map((l) => `blobs/sha256/${sha(l)}`) }]),
    },
    OCI_LAYOUT,
    { name: 'repositories', data: json({ 'rs-e2e/oci-src': { v1: sha(s.layers.at(-1)!) } }) },
  ];
}

/** What the containerd image store saves: no manifest.json; index.json → a nested index listing an
 * attestation manifest first, then the linux/amd64 image with gzip layers. */
function ociArchive(s: Source, gz: Buffer[]): TarFixtureEntry[] {
  const image = json({
    schemaVersion: 2,
    mediaType: MANIFEST,
    config: descriptor(CONFIG, s.config),
    layers: gz.map((l) => descriptor('application/vnd.oci.image.layer.v1.tar+gzip', l)),
  });
  // As BuildKit writes it: its config has a rootfs too, so picking it would not fail early.
  const provenance = json({ _type: 'https://in-toto.io/Statement/v0.1', predicateType: 'https://slsa.dev/provenance/v0.2', subject: [], predicate: {} });
  const attConfig = json({ architecture: 'unknown', os: 'unknown', config: {}, rootfs: { type: 'layers', diff_ids: [`sha256:${sha(provenance)}`] } });
  const attestation = json({
    schemaVersion: 2,
    mediaType: MANIFEST,
    config: descriptor(CONFIG, attConfig),
    layers: [descriptor('application/vnd.in-toto+json', provenance, { annotations: { 'in-toto.io/predicate-type': 'https://slsa.dev/provenance/v0.2' } })],
  });
  const nested = json({
    schemaVersion: 2,
    mediaType: INDEX,
    manifests: [
      descriptor(MANIFEST, attestation, {
        annotations: { 'vnd.docker.reference.digest': `sha256:${sha(image)}`, 'vnd.docker.reference.type': 'attestation-manifest' },
        platform: { architecture: 'unknown', os: 'unknown' },
      }),
      descriptor(MANIFEST, image, { platform: { architecture: 'amd64', os: 'linux' } }),
    ],
  });
  return [
    OCI_LAYOUT,
    { name: 'blobs/', type: 'dir' },
    { name: 'blobs/sha256/', type: 'dir' },
    blob(attestation),
    blob(attConfig),
    blob(provenance),
    blob(nested),
    blob(image),
    blob(s.config),
    ...gz.map(blob),
    { name: 'index.json', data: json({ schemaVersion: 2, mediaType: INDEX, manifests: [descriptor(INDEX, nested, { annotations: NAME_ANNOTATIONS })] }) },
  ];
}

function dockerImageExists(ref: string): boolean {
  try {
    execFileSync('docker', ['image', 'inspect', ref], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  await requireCluster();
  ws = makeWorkspace();
  // The names the deliveries use must not be in the engine, so that they can show it was not used.
  for (const v of ['dual', 'gzip', 'bad'])
    if (dockerImageExists(`rs-e2e/oci:${v}`)) execFileSync('docker', ['image', 'rm', `rs-e2e/oci:${v}`], { stdio: 'ignore' });
  execFileSync('docker', ['build', '-q', '-t', SRC, ws], { stdio: ['ignore', 'ignore', 'pipe'] });
  const saved = join(mkdtempSync(join(tmpdir(), 'rs-archive-')), 'legacy.tar');
  execFileSync('docker', ['save', '-o', saved, SRC]);
  src = await readLegacySave(saved);
  // The real image: its config is what Docker calls its id, and its rootfs lists the layers' digests.
  expect(`sha256:${src.configHex}`).toBe(execFileSync('docker', ['image', 'inspect', '--format', '{{.Id}}', SRC], { encoding: 'utf8' }).trim());
  expect(JSON.parse(src.config.toString()).rootfs.diff_ids).toEqual(src.layers.map((l) => `sha256:${sha(l)}`));

  mkdirSync(join(ws, 'archives'));
  dualAbs = await writeTar(join(ws, DUAL_REL), dualArchive(src));
  gzipLayers = src.layers.map((l) => gzipSync(l));
  ociAbs = await writeTar(join(mkdtempSync(join(ws, 'rs-archive-')), 'containerd.tar'), ociArchive(src, gzipLayers));
  // The fixtures are tars that GNU tar reads.
  for (const p of [dualAbs, ociAbs]) execFileSync('tar', ['-tf', p], { stdio: 'ignore' });
}, 300_000);

function inputs(archive: string, variant: string, remoteDir: string): Record<string, string> {
  return {
    ...clusterInputs(),
    archive,
    image: `rs-e2e/oci:${variant}`,
    'smoke-test': 'gpu-check.sh',
    partition: 'short-gpu',
    gpus: '1',
    'remote-dir': remoteDir,
  };
}

function expectPassed(run: StepRun): void {
  if (run.code !== 0) throw new Error(`the delivery failed (code ${run.code}):\n${run.log}`);
  expect(run.log).not.toMatch(/::error::/);
  expect(run.outputs['job-state']).toBe('COMPLETED');
  expect(run.outputs['exit-code']).toBe('0');
}

function buildCalls(run: StepRun, since: number) {
  return singularityCalls(since).filter((c) => c.SLURM_JOB_ID === run.outputs['job-id'] && c.argv[0] === 'build');
}

/** The checks every first delivery of an archive must pass. */
function describeFirstDelivery(variant: string, archive: () => string, archiveFile: () => string, remoteDir: string, more: (run: () => StepRun) => void) {
  describe(`first delivery (${variant})`, () => {
    let run: StepRun;
    let since: number;
    beforeAll(async () => {
      since = Date.now() / 1000;
      run = await runStep(inputs(archive(), variant, remoteDir), { workspace: ws });
    }, 180_000);

    test('passes the GPU smoke test', () => {
      expectPassed(run);
      expect(run.log).toContain('Output tensor device: cuda:0');
    });

    test('built the .sif in the job from the docker-archive the job assembled', () => {
      expect(run.outputs['job-id']).toMatch(/^\d+$/);
      const builds = buildCalls(run, since);
      expect(builds).toHaveLength(1);
      expect(builds[0].argv.at(-1)).toMatch(new RegExp(`^docker-archive:(//)?${escape(`${CLUSTER_HOME}/${remoteDir}/`)}.+\\.tar$`));
      // Built next to the .sif, then moved into place.
      expect(builds[0].argv.at(-2)).toMatch(new RegExp(`^${escape(run.outputs['sif-path'])}(\\.tmp\\.\\d+)?$`));
      expect(run.outputs['sif-path']).toBe(`${CLUSTER_HOME}/${remoteDir}/sif/${src.configHex}.sif`);
      expect(statSync(run.outputs['sif-path']).size).toBeGreaterThan(1000);
    });

    test("reports the config's digest and the archive's size", () => {
      expect(run.outputs['image-digest']).toBe(`sha256:${src.configHex}`);
      expect(run.outputs['bytes-total']).toBe(String(statSync(archiveFile()).size));
      expect(Number(run.outputs['bytes-sent'])).toBeGreaterThan(0);
      expect(run.outputs['sif-reused']).toBe('false');
    });

    test('neither builds nor saves with Docker, nor loads the archive into it', () => {
      expect(run.log).not.toContain('::group::Build');
      expect(run.log).not.toContain('::group::Save');
      expect(run.log).toMatch(/Read \S+ \(sha256:[0-9a-f]{64}\)/);
      expect(run.log).not.toMatch(/^Saved /m);
      expect(dockerImageExists(`rs-e2e/oci:${variant}`)).toBe(false);
    });

    more(() => run);
  });
}

describe('a Docker 25+ archive (OCI layout and legacy manifest.json)', () => {
  const remoteDir = uniqueRemoteDir('archive-dual');
  describeFirstDelivery(
    'dual',
    () => DUAL_REL,
    () => dualAbs,
    remoteDir,
    (run) => {
      test('the store holds the config and the uncompressed layers under their digests', () => {
        expect(run().code).toBe(0);
        const dir = `${CLUSTER_HOME}/${remoteDir}/.store/blobs/sha256`;
        const want = [src.configHex, ...src.layers.map((l) => sha(l))];
        expect(readdirSync(dir).sort()).toEqual([...new Set(want)].sort());
        for (const hex of want) expect(sha(readFileSync(join(dir, hex)))).toBe(hex);
      });
    },
  );

  test('a second delivery to the same remote-dir reuses the .sif and sends nothing', async () => {
    const since = Date.now() / 1000;
    const run = await runStep(inputs(DUAL_REL, 'dual', remoteDir), { workspace: ws });
    expectPassed(run);
    expect(run.log).toContain('Output tensor device: cuda:0');
    expect(run.outputs['sif-reused']).toBe('true');
    expect(run.outputs['bytes-sent']).toBe('0');
    expect(run.outputs['image-digest']).toBe(`sha256:${src.configHex}`);
    expect(run.outputs['sif-path']).toBe(`${CLUSTER_HOME}/${remoteDir}/sif/${src.configHex}.sif`);
    expect(run.outputs['bytes-total']).toBe(String(statSync(dualAbs).size));
    expect(buildCalls(run, since)).toEqual([]);
    expect(run.log).not.toContain('::group::Build');
    expect(run.log).not.toContain('::group::Save');
  });

  test('image is optional with an archive: the same image (same digest, same .sif) is delivered', async () => {
    const { image: _image, ...rest } = inputs(DUAL_REL, 'dual', remoteDir);
    const since = Date.now() / 1000;
    const run = await runStep(rest, { workspace: ws });
    expectPassed(run);
    expect(run.outputs['image-digest']).toBe(`sha256:${src.configHex}`);
    expect(run.outputs['sif-path']).toBe(`${CLUSTER_HOME}/${remoteDir}/sif/${src.configHex}.sif`);
    expect(run.outputs['sif-reused']).toBe('true');
    expect(buildCalls(run, since)).toEqual([]);
  });
});

describe('a containerd image store archive (pure OCI, nested index, attestation, gzip layers)', () => {
  const remoteDir = uniqueRemoteDir('archive-oci');
  describeFirstDelivery(
    'gzip',
    () => ociAbs,
    () => ociAbs,
    remoteDir,
    (run) => {
      test('the store holds the config and the gzip layers, as sent, under their compressed digests', () => {
        expect(run().code).toBe(0);
        const dir = `${CLUSTER_HOME}/${remoteDir}/.store/blobs/sha256`;
        const gz = gzipLayers.map((l) => sha(l));
        // gzip output differs from the tar it compresses: the digests are the compressed ones.
        for (const [i, hex] of gz.entries()) expect(hex).not.toBe(sha(src.layers[i]));
        expect(readdirSync(dir).sort()).toEqual([...new Set([src.configHex, ...gz])].sort());
        for (const [i, hex] of gz.entries()) expect(readFileSync(join(dir, hex)).equals(gzipLayers[i])).toBe(true);
      });
    },
  );
});

describe('a bad archive fails the step at once, naming it, and touches nothing on the cluster', () => {
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(ws, 'rs-bad-archive-'));
    writeFileSync(join(dir, 'notes.tar'), 'These are release notes, not an image.\n'.repeat(40));
    const layers = src.layers.map((l) => ({ name: `${sha(l)}/layer.tar`, data: l }));
    const one = { Config: `${src.configHex}.json`, Layers: layers.map((l) => l.name) };
    await writeTar(join(dir, 'two-images.tar'), [
      { name: `${src.configHex}.json`, data: src.config },
      ...layers,
      {
        name: 'manifest.json',
        data: json([
          { ...one, RepoTags: ['rs-e2e/a:v1'] },
          { ...one, RepoTags: ['rs-e2e/b:v1'] },
        ]),
      },
    ]);
  });

  test.each([
    ['a text file named .tar', 'notes.tar', /not a valid tar file/],
    ['two images in manifest.json', 'two-images.tar', /2 images in manifest\.json/],
  ])('%s', async (_name, file, message) => {
    const remoteDir = uniqueRemoteDir('archive-bad');
    const path = join(dir, file);
    const since = Date.now() / 1000;
    const run = await runStep(inputs(path, 'bad', remoteDir), { workspace: ws });
    expect(run.code).toBe(1);
    const errors = run.log.split('\n').filter((l) => l.startsWith('::error::'));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain(file);
    expect(errors[0]).toMatch(/Input 'archive'/);
    expect(errors[0]).toMatch(message);
    expect(run.seconds).toBeLessThan(5); // node start-up included
    expect(run.log).not.toContain('::group::Build');
    expect(run.log).not.toContain('::group::Save');
    expect(existsSync(`${CLUSTER_HOME}/${remoteDir}`)).toBe(false);
    expect(run.state.jobId).toBeUndefined();
    expect(run.outputs['job-id']).toBeUndefined();
    expect(singularityCalls(since).filter((c) => c.cwd.includes(remoteDir))).toEqual([]);
    expect(dockerImageExists('rs-e2e/oci:bad')).toBe(false);
  });
});
