// Getting an image's blobs into the cluster's store: one round trip says what the store has (and
// whether an intact .sif of the image makes everything else unnecessary), then the image is saved
// and the missing blobs are sent, the large ones while the save is still writing them.
import { createHash } from 'node:crypto';
import { displayPath, isUnderTmp } from './clusterpath.js';
import { BuildError, InputError, PreflightError, RemoteCommandError } from './errors.js';
import { mib } from './format.js';
import { evaluatePreflight, parsePreflight, preflightFailureMessage, preflightScript, preflightThen, wantsOf } from './preflight.js';
import type { Reporter } from './reporter.js';
import type { Session } from './session.js';
import type { ImageSource, SavedImage } from './source.js';
import { hexOf } from './layout.js';
import type { Remote } from './remote.js';
import { PREPARE_REFUSED, type PrepareParams, type StoreReport, imageBlobs, parsePrepare, planTransfer, prepareScript } from './store.js';
import type { TarEntry } from './tar.js';
import type { Timings } from './timings.js';
import { type TransferStats, Transfer, uploadOf } from './transfer.js';
import type { Settings } from './settings.js';

/** Members smaller than this wait for the end of the save (they cost a command each either way). */
const EARLY_MIN = 1 << 20;

type PrepareWhat = Pick<PrepareParams, 'imageHex' | 'blobHexes' | 'reuse' | 'run'>;

function renderPrepare(s: Settings, params: PrepareWhat): string {
  return prepareScript({
    ...params,
    remoteDir: s.remoteDir,
    tmpdir: s.tmpdir,
    group: s.group,
    publishDir: s.publish?.dir ?? null,
    publishMode: s.publish?.mode ?? null,
    publishGroup: s.publish?.group ?? null,
    existingSif: s.sif,
  });
}

/** Run a script that ends with prepare: its stdout; a refused remote-dir is an InputError naming it. */
async function runPrepare(r: Remote, what: string, script: string): Promise<string> {
  const out = await r.exec(script);
  if (out.code === PREPARE_REFUSED) throw new InputError('remote-dir', out.stderr.toString('utf8').trim());
  if (out.code !== 0) throw new RemoteCommandError(what, out.code, out.stderr.toString('utf8'));
  return out.stdout.toString('utf8');
}

/** The inputs were checked as written; a link or a `..` above the home may still lead into /tmp. */
function checkResolved(report: StoreReport): StoreReport {
  for (const [input, path] of [
    ['tmpdir', report.tmpdir],
    ['remote-dir', report.root],
  ] as const) {
    if (isUnderTmp(path))
      throw new InputError(input, `is ${path} on the cluster, which is under /tmp: node-local /tmp is small and not shared; give a folder elsewhere`);
  }
  return report;
}

function prepare(session: Session, s: Settings, params: PrepareWhat): Promise<StoreReport> {
  return session.retry('Preparing the store', async (r) =>
    checkResolved(parsePrepare(await runPrepare(r, `Preparing ${displayPath(s.remoteDir)} on the cluster`, renderPrepare(s, params)))),
  );
}

/**
 * The first round trip: preflight (the inputs against what the cluster offers), then the store's
 * first look. A failed check stops the delivery here: nothing saved, sent or submitted.
 */
function preflightAndPrepare(session: Session, s: Settings, params: PrepareWhat, imageBytes: number | null, reporter: Reporter) {
  return session.retry('Preflight', async (r) => {
    const out = await runPrepare(
      r,
      `Checking the inputs against the cluster and preparing ${displayPath(s.remoteDir)}`,
      preflightThen(preflightScript(s), renderPrepare(s, params)),
    );
    const facts = parsePreflight(out);
    if (!facts) throw new Error(`unexpected reply from the cluster's preflight: ${JSON.stringify(out.slice(0, 300))}`);
    let report: StoreReport | null = null;
    let unprepared: unknown = null;
    try {
      report = parsePrepare(out);
    } catch (e) {
      unprepared = e;
    }
    // An intact .sif needs no room for the image.
    const checks = evaluatePreflight(facts, wantsOf(s, report?.sifReusable ? null : imageBytes));
    const failed = preflightFailureMessage(checks);
    if (failed) throw new PreflightError(failed, 'Nothing was saved, sent or submitted. `riviera-singularity doctor` shows every check.');
    for (const c of checks.filter((c) => c.status === 'warn')) reporter.warning(`Preflight '${c.input}': ${c.detail} ${c.fix}`);
    reporter.info(
      `Preflight: ${checks.filter((c) => c.status === 'pass').length} of ${checks.length} checks passed (${s.partition}, ${s.gpus} GPU(s), ${s.time ?? 'default time'}).`,
    );
    if (!report) throw unprepared;
    return { report: checkResolved(report), accounting: facts.accounting };
  });
}

/**
 * Which members of a tar being saved go before the save ends: a `blobs/sha256/HEX` member the store
 * lacks (its name is its digest), or, in the legacy layout whose names say nothing, any
 * `layer.tar` when the store has none of the image's layers (a first delivery). Pure.
 * Returns the member's part key and its digest's hex if the name gives it, or null to wait.
 */
export function earlyMember(
  e: Pick<TarEntry, 'name' | 'size'>,
  lacking: Set<string>,
  noLayers: boolean,
  imageHex: string,
): { key: string; hex: string | null } | null {
  if (e.size < EARLY_MIN) return null;
  const named = /^(?:\.\/)?blobs\/sha256\/([0-9a-f]{64})$/.exec(e.name);
  if (named) return lacking.has(named[1]) ? { key: named[1], hex: named[1] } : null;
  if (noLayers && /(^|\/)layer\.tar$/.test(e.name)) {
    // Named after the image and the member, so that a later delivery of this image resumes it.
    return { key: `m${createHash('sha256').update(`${imageHex}/${e.name}`).digest('hex').slice(0, 24)}`, hex: null };
  }
  return null;
}

export interface Uploaded {
  report: StoreReport;
  /** The cluster has job accounting (sacct), from the preflight. */
  accounting: boolean;
  /** The image as saved; null when nothing had to be saved (a reusable .sif, or an existing .sif under test). */
  image: SavedImage | null;
  stats: TransferStats;
}

/**
 * Prepare the store, and unless an intact .sif makes it unnecessary, save the image and send the
 * blobs the store lacks. Timed as `upload`, except the save (`save`: from its start to its end,
 * sending meanwhile); `upload` is what the transfer takes beyond that.
 */
export async function upload(session: Session, s: Settings, source: ImageSource | null, run: string, reporter: Reporter, timings: Timings): Promise<Uploaded> {
  const none = { sent: 0, raw: 0, rawTotal: 0 };
  const imageHex = source ? hexOf(source.digest) : null;
  const first = await timings.time('upload', () =>
    preflightAndPrepare(session, s, { imageHex, blobHexes: source?.blobHexes ?? [], reuse: !s.forceRebuild, run }, source?.size ?? null, reporter),
  );
  let report = first.report;
  const accounting = first.accounting;
  if (!source) {
    reporter.info(`Testing the existing ${report.existingSif}: nothing to build or send.`);
    return { report, accounting, image: null, stats: none };
  }
  if (report.sifReusable) {
    reporter.info('The cluster has an intact .sif of this image: nothing to save or send.');
    return { report, accounting, image: null, stats: none };
  }
  for (const bad of report.bad) reporter.warning(`Blob ${bad.slice(0, 12)} on the cluster failed its digest check; it was removed and is sent again.`);
  const lacking = new Set(source.blobHexes.filter((h) => !report.have.has(h)));
  const noLayers = source.blobHexes.filter((h) => h !== imageHex).every((h) => lacking.has(h));
  // Members sent before the save ends, by tar member name.
  const early = new Map<string, string>();
  let transfer: Transfer | null = null;
  const saveStarted = Date.now();
  const { bytes, saving, saved } = await source.load((e) => {
    const m = earlyMember(e, lacking, noLayers, imageHex!);
    if (!m || !transfer) return false;
    early.set(e.name, m.key);
    transfer.add({
      key: m.key,
      hex: () => m.hex ?? bytes.members.get(e.name)?.hex ?? null,
      offset: e.offset,
      size: e.size,
      mediaType: 'layer',
      parts: report.parts.get(m.key) ?? [],
    });
    return m.hex === null;
  });
  transfer = new Transfer(session, report.root, bytes, report.zstd, reporter);
  let image: SavedImage;
  try {
    image = await saved;
  } catch (e) {
    transfer.abort(e);
    await transfer.finish().catch(() => undefined);
    throw e;
  }
  if (saving) timings.add('save', (Date.now() - saveStarted) / 1000);
  try {
    return await timings.time('upload', async () => {
      const blobs = imageBlobs(image.archive);
      // What went early must be what the archive says it is: the cluster files it under that digest.
      for (const b of blobs) {
        const key = early.get(b.member);
        const got = key && bytes.members.get(b.member)?.hex;
        if (key && got && `sha256:${got}` !== b.digest)
          throw new BuildError(`The saved image's member ${b.member} has digest sha256:${got}, not ${b.digest} as its index says.`);
      }
      const hexes = blobs.map((b) => hexOf(b.digest));
      // The engine's layer IDs were not the archive's blobs (e.g. compressed layers): ask again for these.
      if (hexes.some((h) => !source.blobHexes.includes(h))) report = await prepare(session, s, { imageHex, blobHexes: hexes, reuse: false, run });
      const sentEarly = new Set([...early.keys()]);
      const plan = planTransfer(image.archive, report).filter((j) => !sentEarly.has(j.blob.member));
      for (const job of plan) transfer!.add(uploadOf(job));
      const count = plan.length + early.size;
      reporter.info(
        `The cluster has ${blobs.length - count} of ${blobs.length} blobs; sending ${count} (${mib(transfer!.stats.rawTotal)}${early.size ? `, ${early.size} while saving` : ''}${report.zstd ? '' : ', gzip: no zstd on the cluster'}).`,
      );
      return { report, accounting, image, stats: await transfer!.finish() };
    });
  } catch (e) {
    // Stop the channels still sending before the tar they read goes away.
    transfer.abort(e);
    await transfer.finish().catch(() => undefined);
    await image.cleanup();
    throw e;
  }
}
