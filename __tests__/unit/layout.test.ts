// Where a delivery's things are on the cluster (src/core/layout.ts).
import {
  JOB_LINK_PREFIX,
  REMOTE_DIRS,
  blobPath,
  hexOf,
  imageFileName,
  jobLinkPath,
  newRunId,
  publishedNames,
  remotePaths,
  sifPath,
} from '../../src/core/layout.js';

const dirs = { home: '/home/me', root: '/home/me/rd', tmpdir: '/scratch/me/tmp', publishDir: '/proj/images', existingSif: null };

describe('remotePaths', () => {
  test("an image: its content-addressed .sif, the per-image link, the run's job dir, the published .sif", () => {
    expect(remotePaths(dirs, 'org/my-image:v1.2', 'abc', '20261127-150000-a1b2c3', { name: 'my-image', version: 'v1.2' })).toEqual({
      home: '/home/me',
      root: '/home/me/rd',
      tmpdir: '/scratch/me/tmp',
      sif: '/home/me/rd/sif/abc.sif',
      sifLink: '/home/me/rd/images/org_my-image_v1.2.sif',
      jobDir: '/home/me/rd/jobs/20261127-150000-a1b2c3',
      hold: '/home/me/rd/.store/holds/20261127-150000-a1b2c3',
      publishDir: '/proj/images',
      published: '/proj/images/my-image_v1.2.sif',
    });
  });

  test('an existing .sif: tested where it is, no link; not publishing: nothing published', () => {
    const p = remotePaths({ ...dirs, publishDir: null, existingSif: '/data/given.sif' }, 'x', null, 'r', null);
    expect(p).toMatchObject({ sif: '/data/given.sif', sifLink: null, jobDir: '/home/me/rd/jobs/r', publishDir: null, published: null });
    // Publishing asked for but no directory resolved: nothing is published.
    expect(remotePaths({ ...dirs, publishDir: null }, 'x', 'abc', 'r', { name: 'n', version: '1' }).published).toBeNull();
  });
});

describe('names', () => {
  test('the store, the job link and the published files', () => {
    expect(hexOf('sha256:abc')).toBe('abc');
    expect(hexOf('abc')).toBe('abc');
    expect(blobPath('abc')).toBe('.store/blobs/sha256/abc');
    expect(sifPath('abc')).toBe('sif/abc.sif');
    expect(jobLinkPath('4242')).toBe('jobs/job-4242');
    expect(jobLinkPath('4242').startsWith(JOB_LINK_PREFIX)).toBe(true);
    expect(publishedNames('my-image', '1.0')).toEqual({ sif: 'my-image_1.0.sif', record: 'my-image_1.0.json', latest: 'my-image_latest.sif' });
    // Every directory a path above lives in is one prepare creates.
    for (const p of [blobPath('x'), sifPath('x'), jobLinkPath('1')]) expect(REMOTE_DIRS).toContain(p.slice(0, p.lastIndexOf('/')));
  });

  test('imageFileName keeps letters, digits, dot, dash and underscore; runs of anything else become one _', () => {
    expect(imageFileName('ghcr.io/org/name:tag')).toBe('ghcr.io_org_name_tag');
    expect(imageFileName('a//b@@c')).toBe('a_b_c');
  });

  test('newRunId: the UTC time, sortable, and a random part', () => {
    const a = newRunId();
    expect(a).toMatch(/^\d{8}-\d{6}-[0-9a-f]{6}$/);
    expect(newRunId()).not.toBe(a);
  });
});
