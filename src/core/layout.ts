// Where a delivery's things are on the cluster: the one module that knows the names under
// remote-dir and in the publish directory. Paths here are relative to remote-dir unless a
// function takes the root; the scripts in cluster/ get them as parameters.
//
//   .store/blobs/sha256/HEX        a blob (an image config or layer), named by its digest
//   .store/incoming/KEY.S-E.part   bytes S to E of a blob being uploaded (KEY: its hex, or a stand-in
//                                  while its digest is not known); .part.lock: its sender's lock,
//                                  KEY.lock: the lock of whoever joins the parts into the blob;
//                                  KEY.blob: the hex a stand-in KEY was joined into (for deliveries
//                                  still sending under it: they cannot know the digest yet)
//   .store/images/HEX              an image's record: its blobs' hexes (garbage collection keeps these)
//   .riviera-singularity           the marker: this folder was made by the tool, which keeps to it
//   .store/lock                    shared by deliveries and jobs, exclusive for garbage collection
//   .store/holds/RUN               what run RUN's job uses (`image HEX`, then `job ID`): kept until
//                                  Slurm no longer knows the job; released by a delivery that ends
//                                  without one (a killed one's lasts a day)
//   .store/locks/publish-HASH      serialises our publications into one publish directory
//   sif/HEX.sif (+ .sha256)        the image's .sif and its digest (gc pairs it with the record HEX),
//     (+ .verified)                and what the last prepare verified of it (store-prepare.sh)
//   images/NAME.sif                link to the newest .sif of an image name
//   jobs/RUN/                      a job's directory (JOB_FILES)
//   jobs/job-ID                    link to the job's directory, by Slurm job id (status, logs)
// In the publish directory: NAME_VERSION.sif, .sif.sha256 and .json (the provenance record), and
// NAME_latest.sif, a link to the newest.

import { createHash, randomBytes } from 'node:crypto';

export const STORE = '.store';
export const BLOBS = `${STORE}/blobs/sha256`;
export const INCOMING = `${STORE}/incoming`;
export const IMAGE_RECORDS = `${STORE}/images`;
export const STORE_LOCK = `${STORE}/lock`;
export const HOLDS = `${STORE}/holds`;
export const LOCKS = `${STORE}/locks`;
export const SIFS = 'sif';
export const JOBS = 'jobs';
/** Written in remote-dir when the tool creates it; a folder without it is not the tool's to use. */
export const REMOTE_MARKER = '.riviera-singularity';

/** Every directory of remote-dir, which group sharing makes setgid (new files inherit the group). */
export const REMOTE_DIRS = ['.', STORE, `${STORE}/blobs`, BLOBS, INCOMING, IMAGE_RECORDS, HOLDS, LOCKS, SIFS, 'images', JOBS];

/** `sha256:HEX` → HEX, the name of a blob or an image in the store. */
export function hexOf(digest: string): string {
  return digest.replace(/^sha256:/, '');
}

export const blobPath = (hex: string) => `${BLOBS}/${hex}`;
/** Bytes [start, end) of a blob being uploaded under `key` (store-receive.sh reads the bounds back from the name). */
export const partPath = (key: string, start: number, end: number) => `${INCOMING}/${key}.${start}-${end}.part`;
/** Held by whoever joins a blob's parts. */
export const joinLockPath = (key: string) => `${INCOMING}/${key}.lock`;
/** The hex of the blob the parts of stand-in `key` were joined into. */
export const joinedRecordPath = (key: string) => `${INCOMING}/${key}.blob`;
export const imageRecordPath = (hex: string) => `${IMAGE_RECORDS}/${hex}`;
export const sifPath = (hex: string) => `${SIFS}/${hex}.sif`;
/** Run RUN's hold on what its job uses. */
export const holdPath = (run: string) => `${HOLDS}/${run}`;
/** The lock of our publications into the publish directory whose real path is `dir`. */
export const publishLockPath = (dir: string) => `${LOCKS}/publish-${createHash('sha256').update(dir).digest('hex').slice(0, 16)}`;

/** `org/name:tag` → `org_name_tag`: a file name for the image. */
export function imageFileName(image: string): string {
  return image.replace(/[^A-Za-z0-9._-]+/g, '_');
}

/** The stable per-image link to its newest .sif. */
export const sifLinkPath = (image: string) => `images/${imageFileName(image)}.sif`;

/** A new run's name, its job directory's: the time (sortable) and a random part. */
export function newRunId(): string {
  const t = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `${t}-${randomBytes(3).toString('hex')}`;
}

/** What newRunId makes, as a shell pattern: garbage collection removes no other job directory. */
export const RUN_ID_GLOB = '[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]-[0-9][0-9][0-9][0-9][0-9][0-9]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]';

export const jobDirPath = (run: string) => `${JOBS}/${run}`;

/** The files in a job's directory. */
export const JOB_FILES = {
  script: 'job.sh',
  /** manifest.json of the docker-archive the job assembles. */
  manifest: 'manifest.json',
  /** `<phase> <exit code>`, written by the job when it ends. */
  status: 'status',
  /** The job's stdout and stderr (sbatch --output, relative to --chdir). */
  output: 'job.out',
  /** sbatch's answer, kept by submit.sh: a retried submission finds the job in it. */
  submitted: 'submitted',
  /** Held while submitting: one submission per job directory at a time. */
  submitLock: 'submit.lock',
  /** Touched by every poll; the job's watchdog compares it with its own file. */
  heartbeat: 'heartbeat',
  watchdog: 'watchdog',
} as const;

/** A name the smoke-test script, copied into the job directory, cannot have: a job file (or its temp name), hidden, or option-like. */
export function isJobFileName(name: string): boolean {
  return name.startsWith('.') || name.startsWith('-') || Object.values(JOB_FILES).some((f) => name === f || name.startsWith(`${f}.`));
}

/** jobs/job-: followed by the Slurm job id, the link to that job's directory. */
export const JOB_LINK_PREFIX = `${JOBS}/job-`;
export const jobLinkPath = (jobId: string) => `${JOB_LINK_PREFIX}${jobId}`;

/** The published files of one version, in the publish directory. */
export function publishedNames(name: string, version: string) {
  return {
    sif: `${name}_${version}.sif`,
    record: `${name}_${version}.json`,
    latest: `${name}_latest.sif`,
  };
}

/** Where the cluster resolved the directories (absolute), as the store's prepare reports them. */
export interface ResolvedDirs {
  /** The home directory, which relative path inputs (bind sources) are under. */
  home: string;
  root: string;
  tmpdir: string;
  publishDir: string | null;
  /** The existing .sif under test, if any. */
  existingSif: string | null;
}

/** Remote paths of one delivery, all absolute. */
export interface RemotePaths {
  home: string;
  root: string;
  tmpdir: string;
  sif: string;
  /** Stable per-image link to the newest .sif; null when testing an existing .sif. */
  sifLink: string | null;
  jobDir: string;
  /** The run's hold on what its job uses. */
  hold: string;
  publishDir: string | null;
  /** Where the .sif is published if the smoke test passes. */
  published: string | null;
}

/** The paths of one delivery: of the image `imageHex` (null: the existing .sif), in run `run`. */
export function remotePaths(
  dirs: ResolvedDirs,
  image: string,
  imageHex: string | null,
  run: string,
  publish: { name: string; version: string } | null,
): RemotePaths {
  const root = dirs.root;
  return {
    home: dirs.home,
    root,
    tmpdir: dirs.tmpdir,
    sif: imageHex !== null ? `${root}/${sifPath(imageHex)}` : dirs.existingSif!,
    sifLink: imageHex !== null ? `${root}/${sifLinkPath(image)}` : null,
    jobDir: `${root}/${jobDirPath(run)}`,
    hold: `${root}/${holdPath(run)}`,
    publishDir: dirs.publishDir,
    published: publish && dirs.publishDir ? `${dirs.publishDir}/${publishedNames(publish.name, publish.version).sif}` : null,
  };
}
