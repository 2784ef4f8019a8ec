import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { legacyManifest, readImageArchive, type ArchiveBlob } from '../../src/core/archive.js';
import { BuildError } from '../../src/core/errors.js';
import { listTar, readTarMember, type TarEntry } from '../../src/core/tar.js';
import { paxRecords, tarBuffer, writeTar, type TarFixtureEntry } from '../helpers/tarfixture.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'archive-test-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let counter = 0;
const tarPath = () => join(dir, `fixture-${++counter}.tar`);
const sha = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

async function bytesAt(path: string, offset: number, size: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(size);
    await fh.read(buf, 0, size, offset);
    return buf;
  } finally {
    await fh.close();
  }
}

async function expectBuildError(promise: Promise<unknown>, message: RegExp): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BuildError);
  expect((err as Error).message).toMatch(message);
}

/** `tar -tvf` as [type, size, name] rows. */
function gnuListing(path: string): [string, number, string][] {
  const types: Record<string, string> = { '-': 'file', d: 'dir', l: 'symlink', h: 'hardlink' };
  return execFileSync('tar', ['-tvf', path], { encoding: 'utf8' })
    .trimEnd()
    .split('\n')
    .map((line) => {
      const [, mode, size, rest] = /^(\S)\S*\s+\S+\s+(\d+)\s+\S+\s+\S+\s+(.*)$/.exec(line)!;
      return [types[mode], Number(size), rest.replace(/ (->|link to) .*$/, '')];
    });
}

const rows = (entries: TarEntry[]) => entries.map((e): [string, number, string] => [e.type, e.size, e.name]);

describe('listTar / readTarMember', () => {
  const longDir = `${'d'.repeat(60)}/${'e'.repeat(60)}`;
  const fixture: TarFixtureEntry[] = [
    { name: 'plain.txt', data: 'hello\n' },
    { name: 'dir/', type: 'dir' },
    { name: `${longDir}/pax-name.txt`, data: 'pax long name', longNames: 'pax' },
    { name: `${longDir}/gnu-name.txt`, data: 'gnu long name', longNames: 'gnu' },
    { name: `${longDir}/ustar-prefix.txt`, data: 'ustar prefix', longNames: 'ustar' },
    { name: 'pax_global_header', type: 'pax-global', data: paxRecords({ comment: 'ignored' }) },
    { name: 'base256.bin', data: Buffer.alloc(1000, 7), size: 'base256' },
    { name: 'pax-size.bin', data: 'x'.repeat(513), size: 'pax' },
    { name: 'link', type: 'symlink', linkname: `${longDir}/${'t'.repeat(50)}`, longNames: 'gnu' },
    { name: 'paxlink', type: 'symlink', linkname: `${longDir}/${'u'.repeat(50)}` },
    { name: 'hard', type: 'hardlink', linkname: 'plain.txt' },
  ];

  it('reads names, types, sizes, links and data offsets of every header form', async () => {
    const path = await writeTar(tarPath(), fixture);
    const entries = await listTar(path);
    expect(entries.map((e) => [e.name, e.type, e.size, e.linkname])).toEqual([
      ['plain.txt', 'file', 6, ''],
      ['dir/', 'dir', 0, ''],
      [`${longDir}/pax-name.txt`, 'file', 13, ''],
      [`${longDir}/gnu-name.txt`, 'file', 13, ''],
      [`${longDir}/ustar-prefix.txt`, 'file', 12, ''],
      ['base256.bin', 'file', 1000, ''],
      ['pax-size.bin', 'file', 513, ''],
      ['link', 'symlink', 0, `${longDir}/${'t'.repeat(50)}`],
      ['paxlink', 'symlink', 0, `${longDir}/${'u'.repeat(50)}`],
      ['hard', 'hardlink', 0, 'plain.txt'],
    ]);
    for (const entry of entries.filter((e) => e.type === 'file')) {
      const expected = Buffer.from(fixture.find((f) => f.name === entry.name)!.data!);
      expect(await bytesAt(path, entry.offset, entry.size)).toEqual(expected);
      expect(await readTarMember(path, entry)).toEqual(expected);
    }
    expect(await readTarMember(path, entries[0], 4)).toEqual(Buffer.from('hell'));
  });

  it('agrees with GNU tar -tvf', async () => {
    const path = await writeTar(tarPath(), fixture);
    expect(rows(await listTar(path))).toEqual(gnuListing(path));
  });

  it('stops at end of file when the zero blocks are missing', async () => {
    const path = await writeTar(tarPath(), fixture.slice(0, 2), { end: false });
    expect((await listTar(path)).map((e) => e.name)).toEqual(['plain.txt', 'dir/']);
  });

  it('stops at the first zero block, ignoring what follows', async () => {
    const path = tarPath();
    await writeFile(path, Buffer.concat([tarBuffer(fixture.slice(0, 1)), Buffer.from('trailing garbage')]));
    expect((await listTar(path)).map((e) => e.name)).toEqual(['plain.txt']);
  });

  it.each(['gnu', 'posix', 'ustar'])('parses a real GNU tar --format=%s archive with a path over 100 bytes', async (format) => {
    const src = join(dir, `src-${format}`);
    const deep = join(src, 'a'.repeat(60), 'b'.repeat(60));
    await mkdir(deep, { recursive: true });
    await writeFile(join(deep, 'c'.repeat(20) + '.txt'), 'deep content\n');
    await writeFile(join(src, 'small'), 'small\n');
    const path = tarPath();
    execFileSync('tar', [`--format=${format}`, '-cf', path, '-C', src, '.']);
    const entries = await listTar(path);
    expect(rows(entries)).toEqual(gnuListing(path));
    const deepEntry = entries.find((e) => e.name.endsWith('.txt'))!;
    expect(deepEntry.name).toBe(`./${'a'.repeat(60)}/${'b'.repeat(60)}/${'c'.repeat(20)}.txt`);
    expect((await readTarMember(path, deepEntry)).toString()).toBe('deep content\n');
  });

  it('rejects a header with a bad checksum', async () => {
    const buf = tarBuffer(fixture.slice(0, 2));
    buf[512 + 512 + 3] ^= 0x01; // a byte of the second header's name
    const path = tarPath();
    await writeFile(path, buf);
    await expectBuildError(listTar(path), /header at byte 1024 has a bad checksum/);
  });

  it('rejects a truncated file', async () => {
    const buf = tarBuffer([{ name: 'big', data: Buffer.alloc(2000) }]);
    const path = tarPath();
    await writeFile(path, buf.subarray(0, 1500));
    await expectBuildError(listTar(path), /truncated/);
    await writeFile(path, buf.subarray(0, 300));
    await expectBuildError(listTar(path), /ends inside the header/);
  });

  it('rejects a file that is not a tar, and a missing file', async () => {
    const path = tarPath();
    await writeFile(path, 'this is not a tar archive\n'.repeat(40));
    await expectBuildError(listTar(path), /not a valid tar file/);
    await expectBuildError(listTar(join(dir, 'nope.tar')), /Cannot read image archive .*nope\.tar/);
  });

  it('says so when the tar is gzip-compressed (docker save | gzip)', async () => {
    const path = tarPath();
    await writeFile(path, gzipSync(tarBuffer([{ name: 'manifest.json', data: '[]' }])));
    await expectBuildError(listTar(path), /gzip-compressed: pass the tar itself/);
  });
});

// A tiny image: two layers (themselves tars) and the config listing their diff_ids.
const layerTars = [tarBuffer([{ name: 'etc/hello', data: 'hello\n' }]), tarBuffer([{ name: 'usr/bin/tool', data: 'x'.repeat(700) }])];
const diffIds = layerTars.map((l) => `sha256:${sha(l)}`);
const configFor = (architecture: string) => Buffer.from(JSON.stringify({ architecture, os: 'linux', rootfs: { type: 'layers', diff_ids: diffIds } }));
const config = configFor('amd64');

interface Blob {
  digest: string;
  name: string;
  data: Buffer;
}
function blob(data: string | Buffer): Blob {
  const bytes = Buffer.from(data);
  return { digest: `sha256:${sha(bytes)}`, name: `blobs/sha256/${sha(bytes)}`, data: bytes };
}
const blobEntry = (b: Blob): TarFixtureEntry => ({ name: b.name, data: b.data });
const descriptor = (b: Blob, mediaType: string, extra: object = {}) => ({ mediaType, digest: b.digest, size: b.data.length, ...extra });

function ociManifest(configBlob: Blob, layers: Blob[], layerType = 'application/vnd.oci.image.layer.v1.tar'): Blob {
  return blob(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: descriptor(configBlob, 'application/vnd.oci.image.config.v1+json'),
      layers: layers.map((l) => descriptor(l, layerType)),
    }),
  );
}

const v1Ids = layerTars.map((_, i) => sha(`v1-${i}`));
function legacyEntries(manifest?: object): TarFixtureEntry[] {
  return [
    ...v1Ids.flatMap((id, i): TarFixtureEntry[] => [
      { name: `${id}/`, type: 'dir' },
      { name: `${id}/VERSION`, data: '1.0' },
      { name: `${id}/json`, data: JSON.stringify({ id }) },
      { name: `${id}/layer.tar`, data: layerTars[i] },
    ]),
    { name: `${sha(config)}.json`, data: config },
    {
      name: 'manifest.json',
      data: JSON.stringify(manifest ?? [{ Config: `${sha(config)}.json`, RepoTags: ['demo:1'], Layers: v1Ids.map((id) => `${id}/layer.tar`) }]),
    },
    { name: 'repositories', data: JSON.stringify({ demo: { 1: v1Ids[1] } }) },
  ];
}

/** Each blob's bytes, read back at its offset, hash to its digest. */
async function expectBlobsAt(path: string, blobs: ArchiveBlob[]): Promise<void> {
  for (const b of blobs) expect(`sha256:${sha(await bytesAt(path, b.offset, b.size))}`).toBe(b.digest);
}

describe('readImageArchive', () => {
  it('reads a legacy docker save archive', async () => {
    const path = await writeTar(tarPath(), legacyEntries());
    const archive = await readImageArchive(path);
    expect(archive).toMatchObject({
      path,
      layout: 'legacy',
      repoTags: ['demo:1'],
      imageId: `sha256:${sha(config)}`,
      diffIds,
      config: { digest: `sha256:${sha(config)}`, member: `${sha(config)}.json`, size: config.length, mediaType: 'config' },
    });
    expect(archive.layers.map((l) => [l.member, l.digest, l.mediaType])).toEqual(v1Ids.map((id, i) => [`${id}/layer.tar`, diffIds[i], 'layer']));
    await expectBlobsAt(path, [archive.config, ...archive.layers]);
  });

  it('follows the symlink older docker save writes for a repeated layer', async () => {
    const repeated = Buffer.from(JSON.stringify({ rootfs: { type: 'layers', diff_ids: [diffIds[0], diffIds[0]] } }));
    const dupId = sha('dup');
    const path = await writeTar(tarPath(), [
      { name: `./${v1Ids[0]}/layer.tar`, data: layerTars[0] },
      { name: `./${dupId}/layer.tar`, type: 'symlink', linkname: `../${v1Ids[0]}/layer.tar` },
      { name: `./${sha(repeated)}.json`, data: repeated },
      {
        name: './manifest.json',
        data: JSON.stringify([{ Config: `${sha(repeated)}.json`, RepoTags: null, Layers: [`${v1Ids[0]}/layer.tar`, `${dupId}/layer.tar`] }]),
      },
    ]);
    const archive = await readImageArchive(path);
    expect(archive.repoTags).toEqual([]);
    expect(archive.layers[1]).toEqual(archive.layers[0]);
    expect(archive.layers[1].member).toBe(`./${v1Ids[0]}/layer.tar`);
    await expectBlobsAt(path, archive.layers);
  });

  it('reads a Docker 25+ archive that is both legacy and OCI from manifest.json', async () => {
    const configBlob = blob(config);
    const layers = layerTars.map(blob);
    const manifest = ociManifest(configBlob, layers);
    const path = await writeTar(tarPath(), [
      ...[configBlob, ...layers, manifest].map(blobEntry),
      {
        name: 'index.json',
        data: JSON.stringify({
          schemaVersion: 2,
          manifests: [
            descriptor(manifest, 'application/vnd.oci.image.manifest.v1+json', { annotations: { 'io.containerd.image.name': 'docker.io/library/other:2' } }),
          ],
        }),
      },
      { name: 'manifest.json', data: JSON.stringify([{ Config: configBlob.name, RepoTags: ['demo:1'], Layers: layers.map((l) => l.name) }]) },
      { name: 'oci-layout', data: '{"imageLayoutVersion":"1.0.0"}' },
      { name: 'repositories', data: '{}' },
    ]);
    const archive = await readImageArchive(path);
    expect(archive).toMatchObject({ layout: 'oci', repoTags: ['demo:1'], imageId: configBlob.digest, diffIds });
    expect(archive.config).toMatchObject({ digest: configBlob.digest, member: configBlob.name, mediaType: 'config' });
    expect(archive.layers.map((l) => [l.member, l.digest, l.mediaType])).toEqual(layers.map((l) => [l.name, l.digest, 'layer']));
    await expectBlobsAt(path, [archive.config, ...archive.layers]);
  });

  // containerd image store: index.json → image index → platform manifests + attestations, gzip layers.
  const gzLayers = layerTars.map((l) => blob(gzipSync(l)));
  const amdConfig = blob(config);
  const armConfig = blob(configFor('arm64'));
  const amd = ociManifest(amdConfig, gzLayers, 'application/vnd.oci.image.layer.v1.tar+gzip');
  const arm = ociManifest(armConfig, gzLayers, 'application/vnd.oci.image.layer.v1.tar+gzip');
  const attestationLayer = blob('{"_type":"https://in-toto.io/Statement/v0.1"}');
  const attestation = ociManifest(blob('{}'), [attestationLayer], 'application/vnd.in-toto+json');
  const M = 'application/vnd.oci.image.manifest.v1+json';
  const imageIndex = blob(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        descriptor(attestation, M, {
          platform: { os: 'unknown', architecture: 'unknown' },
          annotations: { 'vnd.docker.reference.type': 'attestation-manifest', 'vnd.docker.reference.digest': amd.digest },
        }),
        descriptor(arm, M, { platform: { os: 'linux', architecture: 'arm64' } }),
        descriptor(amd, M, { platform: { os: 'linux', architecture: 'amd64' } }),
      ],
    }),
  );
  const topIndex = (annotations: Record<string, string>[]) => ({
    name: 'index.json',
    data: JSON.stringify({
      schemaVersion: 2,
      manifests: annotations.map((a) => descriptor(imageIndex, 'application/vnd.oci.image.index.v1+json', { annotations: a })),
    }),
  });
  const names = [
    { 'io.containerd.image.name': 'docker.io/library/demo:1', 'org.opencontainers.image.ref.name': '1' },
    { 'io.containerd.image.name': 'docker.io/library/demo:latest', 'org.opencontainers.image.ref.name': 'latest' },
  ];

  it('reads a pure OCI layout, choosing linux/amd64 and skipping attestations', async () => {
    const path = await writeTar(tarPath(), [
      { name: 'oci-layout', data: '{"imageLayoutVersion":"1.0.0"}' },
      topIndex(names),
      ...[imageIndex, attestation, attestationLayer, arm, armConfig, amd, amdConfig, ...gzLayers].map(blobEntry),
    ]);
    const archive = await readImageArchive(path);
    expect(archive).toMatchObject({
      layout: 'oci',
      repoTags: ['docker.io/library/demo:1', 'docker.io/library/demo:latest'],
      imageId: amdConfig.digest,
      diffIds,
      config: { member: amdConfig.name, mediaType: 'config' },
    });
    expect(archive.layers.map((l) => [l.member, l.digest, l.mediaType])).toEqual(gzLayers.map((l) => [l.name, l.digest, 'layer+gzip']));
    await expectBlobsAt(path, [archive.config, ...archive.layers]);
  });

  it('takes the platform that was saved when linux/amd64 was not', async () => {
    const path = await writeTar(tarPath(), [topIndex(names.slice(0, 1)), ...[imageIndex, arm, armConfig, ...gzLayers].map(blobEntry)]);
    expect((await readImageArchive(path)).imageId).toBe(armConfig.digest);
  });

  it('rejects an archive whose members are missing', async () => {
    const noLayer = legacyEntries().filter((e) => e.name !== `${v1Ids[1]}/layer.tar`);
    await expectBuildError(
      readImageArchive(await writeTar(tarPath(), noLayer)),
      new RegExp(`no member '${v1Ids[1]}/layer.tar' \\(referenced by manifest.json\\)`),
    );

    const noOciLayer = [topIndex(names.slice(0, 1)), ...[imageIndex, amd, amdConfig, gzLayers[0]].map(blobEntry)];
    await expectBuildError(
      readImageArchive(await writeTar(tarPath(), noOciLayer)),
      new RegExp(`no member '${gzLayers[1].name}' \\(referenced by manifest ${amd.digest}\\)`),
    );

    const noManifest = [topIndex(names.slice(0, 1)), blobEntry(imageIndex)];
    await expectBuildError(readImageArchive(await writeTar(tarPath(), noManifest)), new RegExp(`no member '${amd.name}'`));

    await expectBuildError(readImageArchive(await writeTar(tarPath(), [{ name: 'hello', data: 'x' }])), /neither manifest.json nor index.json/);
  });

  it('insists on exactly one image', async () => {
    const two = legacyEntries([
      { Config: `${sha(config)}.json`, RepoTags: ['a:1'], Layers: [] },
      { Config: `${sha(config)}.json`, RepoTags: ['b:1'], Layers: [] },
    ]);
    await expectBuildError(readImageArchive(await writeTar(tarPath(), two)), /holds 2 images in manifest.json; save exactly one image/);

    const twoOci = [
      { name: 'index.json', data: JSON.stringify({ manifests: [descriptor(amd, M), descriptor(arm, M)] }) },
      ...[amd, arm, amdConfig, armConfig, ...gzLayers].map(blobEntry),
    ];
    await expectBuildError(readImageArchive(await writeTar(tarPath(), twoOci)), /holds 2 images in index.json; save exactly one image/);
  });

  it('rejects corrupt metadata', async () => {
    const badJson = legacyEntries().map((e) => (e.name === 'manifest.json' ? { ...e, data: '[{' } : e));
    await expectBuildError(readImageArchive(await writeTar(tarPath(), badJson)), /'manifest.json' .* is not valid JSON/);

    const wrongCount = legacyEntries([{ Config: `${sha(config)}.json`, RepoTags: [], Layers: [`${v1Ids[0]}/layer.tar`] }]);
    await expectBuildError(readImageArchive(await writeTar(tarPath(), wrongCount)), /lists 1 layers but its config has 2 diff_ids/);

    const tampered = [topIndex(names.slice(0, 1)), ...[imageIndex, amdConfig, ...gzLayers].map(blobEntry), { name: amd.name, data: `${amd.data} ` }];
    await expectBuildError(readImageArchive(await writeTar(tarPath(), tampered)), new RegExp(`'${amd.name}' .* does not match its digest`));

    const zstdLayer = blob(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0]));
    const zstdConfig = blob(JSON.stringify({ rootfs: { diff_ids: [diffIds[0]] } }));
    const zstd = [
      { name: 'manifest.json', data: JSON.stringify([{ Config: zstdConfig.name, Layers: [zstdLayer.name] }]) },
      ...[zstdConfig, zstdLayer].map(blobEntry),
    ];
    await expectBuildError(readImageArchive(await writeTar(tarPath(), zstd)), /zstd-compressed/);
  });
});

describe('legacyManifest', () => {
  it('writes a one-image manifest.json under the given names', async () => {
    const archive = await readImageArchive(await writeTar(tarPath(), legacyEntries()));
    const text = legacyManifest(archive, { config: 'config.json', layers: ['0.tar', '1.tar'] }, ['demo:1']);
    expect(JSON.parse(text)).toEqual([{ Config: 'config.json', RepoTags: ['demo:1'], Layers: ['0.tar', '1.tar'] }]);
    expect(() => legacyManifest(archive, { config: 'c', layers: ['0.tar'] }, [])).toThrow(/1 layer names for 2 layers/);
  });
});
