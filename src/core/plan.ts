// A delivery's plan without doing it (the CLI's --dry-run): the sbatch command and the job script a
// delivery would submit, through the same layout and rendering, with the parts only the saved
// image and the cluster can tell shown as <placeholders> and paths under ~.
import { displayPath } from './clusterpath.js';
import { STORE, blobPath, remotePaths } from './layout.js';
import { shq } from './quote.js';
import type { Settings } from './settings.js';
import { readSmokeFile, renderSubmission } from './submit.js';

export interface DeliveryPlan {
  image: string;
  build: { context: string; dockerfile: string | null; buildArgs: string[] } | null;
  cluster: string;
  remoteDir: string;
  /** Where the .sif is published if the smoke test passes; null if it is not. */
  publish: string | null;
  sbatch: string[];
  jobScript: string;
}

/** The plan; reads the smoke-test file (a missing one is an InputError, as in a delivery). */
export async function planDelivery(s: Settings): Promise<DeliveryPlan> {
  const smoke = await readSmokeFile(s);
  const dirs = {
    home: '~',
    root: displayPath(s.remoteDir),
    tmpdir: displayPath(s.tmpdir),
    publishDir: s.publish ? displayPath(s.publish.dir) : null,
    existingSif: null,
  };
  const paths = remotePaths(dirs, s.image, '<image-id>', '<run>', s.publish);
  const blob = `${paths.root}/${blobPath('<digest>')}`;
  const members = [
    { name: '<config>.json', blob },
    { name: '<layer>/layer.tar', blob },
  ];
  const sub = renderSubmission(s, paths, { id: '<image-id>', members, manifest: '<manifest.json of the saved image>' }, smoke?.name ?? null, '<token>');
  return {
    image: s.image,
    build: s.build ? { context: s.context, dockerfile: s.dockerfile, buildArgs: s.buildArgs } : null,
    cluster: `${s.username}@${s.host}:${s.port}`,
    remoteDir: s.remoteDir,
    publish: paths.published,
    sbatch: sub.sbatch,
    jobScript: sub.script,
  };
}

/** The plan for a person to read. */
export function describePlan(plan: DeliveryPlan, s: Settings): string {
  return [
    `Would ${plan.build ? `build ${plan.image} from ${plan.build.context}` : `use ${plan.image} from the local engine`}, save it,`,
    `send the layers ${plan.cluster} lacks to ${displayPath(s.remoteDir)}/${STORE}, and submit:`,
    `  ${plan.sbatch.map(shq).join(' ')}`,
    plan.publish ? `If the smoke test passes, publish ${plan.publish}.` : 'Nothing is published (no tag; publish: auto).',
    '',
    '--- job script (paths under ~ are resolved on the cluster; <...> are filled in from the saved image) ---',
    plan.jobScript,
  ].join('\n');
}
