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
import type { ImageSource, SavedImage, Saving } from './source.js';
import { hexOf } from './layout.js';
import type { Remote } from './remote.js';
import { PREPARE_REFUSED, type PrepareParams, type StoreReport, imageBlobs, parsePrepare, planTransfer, prepareScript } from './store.js';
import type { TarEntry } from './tar.js';
import type { Timings } from './timings.js';
import { type TransferStats, Transfer, uploadOf } from './transfer.js';
import type { Settings } from './settings.js';

/** Members smaller than this wait for the end of the save (they cost a command each either way). */
const EARLY_MIN = 1 << 20;
/** A member of the OCI layout, named by its digest: `blobs/sha256/HEX`. */
const NAMED_BLOB = /^(?:\.\/)?blobs\/sha256\/([0-9a-f]{64})$/;

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
  const named = NAMED_BLOB.exec(e.name);
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
 * The image's save, begun before the cluster has said what it lacks (the engine needs a while before
 * its first byte, as long as connecting and the first round trip take on a far link). Members that
 * pass before the answer are held, and handed to the upload's choice once it is known; the save is
 * stopped, and its tar removed, if nothing needs to be sent after all.
 */
export class SaveAhead {
  readonly started = Date.now();
  readonly saving: Promise<Saving>;
  private choose: ((e: TarEntry) => boolean) | null = null;
  private readonly held: TarEntry[] = [];

  constructor(source: ImageSource) {
    this.saving = source.load((e) => {
      if (this.choose) return this.choose(e);
      if (e.size < EARLY_MIN) return false;
      this.held.push(e);
      // A member named by its digest needs no hashing; a legacy layer.tar may go before its digest is known.
      return !NAMED_BLOB.test(e.name);
    });
    // A failure reaches whoever awaits the save; never unhandled here.
    this.saving.then((x) => x.saved.catch(() => undefined)).catch(() => undefined);
  }

  /** From now on `choose` sends the members it picks, beginning with those already held. */
  route(choose: (e: TarEntry) => boolean): void {
    this.choose = choose;
    for (const e of this.held.splice(0)) choose(e);
  }

  /** Stop the save and wait until its tar is gone. */
  async stop(): Promise<void> {
    const x = await this.saving.catch(() => null);
    if (!x) return;
    x.abort();
    await x.saved.then(
      (img) => img.cleanup(),
      () => undefined,
    );
  }
}

/**
 * Prepare the store, and unless an intact .sif makes it unnecessary, send the blobs the store lacks
 * from the save `ahead` began (stopped if nothing is needed). Timed as `upload`, except the part of
 * the save that outlasts the first round trip (`save`, sending meanwhile); `upload` is what the
 * transfer takes beyond that.
 */
export async function upload(
  session: Session,
  s: Settings,
  source: ImageSource | null,
  ahead: SaveAhead | null,
  run: string,
  reporter: Reporter,
  timings: Timings,
): Promise<Uploaded> {
  const none = { sent: 0, raw: 0, rawTotal: 0 };
  const imageHex = source ? hexOf(source.digest) : null;
  let first: Awaited<ReturnType<typeof preflightAndPrepare>>;
  try {
    first = await timings.time('upload', () =>
      preflightAndPrepare(session, s, { imageHex, blobHexes: source?.blobHexes ?? [], reuse: !s.forceRebuild, run }, source?.size ?? null, reporter),
    );
  } catch (e) {
    await ahead?.stop();
    throw e;
  }
  let report = first.report;
  const accounting = first.accounting;
  if (!source || !ahead) {
    reporter.info(`Testing the existing ${report.existingSif}: nothing to build or send.`);
    return { report, accounting, image: null, stats: none };
  }
  if (report.sifReusable) {
    await ahead.stop();
    reporter.info('The cluster has an intact .sif of this image: nothing to save or send.');
    return { report, accounting, image: null, stats: none };
  }
  for (const bad of report.bad) reporter.warning(`Blob ${bad.slice(0, 12)} on the cluster failed its digest check; it was removed and is sent again.`);
  const lacking = new Set(source.blobHexes.filter((h) => !report.have.has(h)));
  const noLayers = source.blobHexes.filter((h) => h !== imageHex).every((h) => lacking.has(h));
  const preflightEnded = Date.now();
  const { bytes, saving, saved } = await ahead.saving;
  const transfer = new Transfer(session, report, bytes, reporter);
  // Members sent before the save ends, by tar member name.
  const early = new Map<string, string>();
  ahead.route((e) => {
    const m = earlyMember(e, lacking, noLayers, imageHex!);
    if (!m) return false;
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
  let image: SavedImage;
  try {
    image = await saved;
  } catch (e) {
    transfer.abort(e);
    await transfer.finish().catch(() => undefined);
    throw e;
  }
  // Only the part of the save that outlasted the first round trip adds to the delivery's time.
  if (saving) {
    timings.add('save', Math.max(0, Date.now() - Math.max(ahead.started, preflightEnded)) / 1000);
    reporter.info(`Saved ${s.image} (${source.digest}): ${image.archive.layout} layout, ${image.archive.layers.length} layer(s), ${mib(image.size)}`);
  }
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
      for (const job of plan) transfer.add(uploadOf(job));
      const count = plan.length + early.size;
      reporter.info(
        `The cluster has ${blobs.length - count} of ${blobs.length} blobs; sending ${count} (${mib(transfer.stats.rawTotal)}${early.size ? `, ${early.size} while saving` : ''}${report.zstd ? '' : ', gzip: no zstd on the cluster'}).`,
      );
      return { report, accounting, image, stats: await transfer.finish() };
    });
  } catch (e) {
    // Stop the channels still sending before the tar they read goes away.
    transfer.abort(e);
    await transfer.finish().catch(() => undefined);
    await image.cleanup();
    throw e;
  }
}
