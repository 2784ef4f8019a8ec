// Where the image comes from: a saved tar (read in place, never deleted) or the local engine
// (saved only when asked, through docker stood in for by a fixture tar).
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tarBuffer, writeSavedImage } from '../helpers/tarfixture.js';
import { fakeReporter } from '../helpers/reporter.js';

const { archiveSource } = await import('../../src/core/source.js');
const { InputError } = await import('../../src/core/errors.js');

// In the workspace (the working directory): an archive must lie there.
const dir = mkdtempSync(join(process.cwd(), '.riviera-source-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const savedTar = (name: string) => writeSavedImage(join(dir, name), Buffer.from('layer bytes'));

describe('archiveSource', () => {
  test("its digest is the image's, read from the index; loading does not copy or delete it", async () => {
    const { path, id } = savedTar('a.tar');
    const reporter = fakeReporter();
    const src = await archiveSource(path, reporter);
    expect(src.digest).toBe(id);
    const loading = await src.load();
    expect(loading.saving).toBe(false);
    const loaded = await loading.saved;
    expect(loaded).toMatchObject({ tar: path, archive: { layout: 'legacy' } });
    expect(loaded.archive.layers).toHaveLength(1);
    await loaded.cleanup();
    expect(existsSync(path)).toBe(true);
    expect(reporter.infos()[0]).toMatch(new RegExp(`^Read ${path} \\(${id}\\): legacy layout, 1 layer\\(s\\)`));
  });

  test('a missing file or a tar that holds no image: an InputError naming archive', async () => {
    await expect(archiveSource(join(dir, 'none.tar'), fakeReporter())).rejects.toThrow(/^Input 'archive': file '.*none\.tar' not found/);
    writeFileSync(join(dir, 'junk.tar'), tarBuffer([{ name: 'readme', data: 'x' }]));
    await expect(archiveSource(join(dir, 'junk.tar'), fakeReporter())).rejects.toBeInstanceOf(InputError);
  });
});
