// The workflows users copy (examples/workflows) and this repository's own (.github/workflows): each
// parses, every job can run, and every step that uses the action passes only inputs that action.yml
// declares, including those it cannot work without, and reads only outputs it declares. action.yml
// itself must be what the runner and the Marketplace need, and match the inputs the code reads. The
// examples are shown verbatim in README.md.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { INPUT_NAMES } from '../../src/core/settings.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** How a workflow refers to this action: the published one, or the checkout itself. */
const ACTION_REFS = ['org/riviera-singularity@v1', './'];
/** Marketplace limit on action.yml's description. */
const MAX_DESCRIPTION = 125;
const BRANDING_COLORS = ['white', 'black', 'yellow', 'blue', 'green', 'orange', 'red', 'purple', 'gray-dark'];

interface Step {
  id?: string;
  name?: string;
  uses?: string;
  run?: string;
  with?: Record<string, unknown>;
}
interface Job {
  'runs-on'?: unknown;
  steps?: Step[];
  strategy?: { 'fail-fast'?: unknown; matrix?: Record<string, unknown> };
  permissions?: unknown;
}
interface Workflow {
  on?: unknown;
  jobs?: Record<string, Job>;
  permissions?: unknown;
}
interface ActionYml {
  name?: unknown;
  description?: unknown;
  author?: unknown;
  branding?: { icon?: unknown; color?: unknown };
  inputs?: Record<string, { description?: unknown; required?: unknown } | null>;
  outputs?: Record<string, { description?: unknown } | null>;
  runs?: { using?: unknown; main?: unknown; post?: unknown };
}

const read = (file: string) => readFileSync(join(ROOT, file), 'utf8');
const action = parse(read('action.yml')) as ActionYml;
const INPUTS = Object.keys(action.inputs ?? {});
const OUTPUTS = Object.keys(action.outputs ?? {});

function yamlFiles(dir: string): string[] {
  if (!existsSync(join(ROOT, dir))) return [];
  return readdirSync(join(ROOT, dir))
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()
    .map((f) => `${dir}/${f}`);
}
const EXAMPLES = yamlFiles('examples/workflows');
const OWN = yamlFiles('.github/workflows');
const ALL = [...EXAMPLES, ...OWN];

function load(file: string): Workflow {
  const doc: unknown = parse(read(file), { uniqueKeys: true });
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new Error(`${file} is not a YAML mapping`);
  return doc as Workflow;
}

const jobsOf = (wf: Workflow): [string, Job][] => Object.entries(wf.jobs ?? {});
const stepsOf = (wf: Workflow): { job: string; step: Step; index: number }[] =>
  jobsOf(wf).flatMap(([job, j]) => (Array.isArray(j.steps) ? j.steps : []).map((step, index) => ({ job, step, index })));
const isRiviera = (s: Step) => typeof s.uses === 'string' && ACTION_REFS.includes(s.uses);
const rivieraSteps = (wf: Workflow) => stepsOf(wf).filter(({ step }) => isRiviera(step));
const label = (job: string, step: Step, index: number) => `${job}: step ${index + 1}${step.id ? ` (${step.id})` : step.name ? ` (${step.name})` : ''}`;
const given = (v: unknown) => v !== undefined && v !== null && String(v).trim() !== '';

/**
 * The inputs a step gives the action: its `with:` keys, plus, for this repository's own workflows,
 * the keys of the settings file it would read (`config`, else .riviera.yml), which never holds the
 * key. The examples run in other repositories, so they must say everything themselves.
 */
function providedInputs(file: string, step: Step): Set<string> {
  const keys = new Set(
    Object.entries(step.with ?? {})
      .filter(([, v]) => given(v))
      .map(([k]) => k),
  );
  if (file.startsWith('.github/')) {
    const config = join(ROOT, String(step.with?.config ?? '.riviera.yml'));
    if (existsSync(config)) {
      const settings = parse(readFileSync(config, 'utf8')) as Record<string, unknown> | null;
      for (const [k, v] of Object.entries(settings ?? {})) if (k !== 'private-key' && given(v)) keys.add(k);
    }
  }
  return keys;
}

/** Every `steps.ID.outputs.NAME` (or `steps.ID.outputs['NAME']`) anywhere in a job. */
function outputRefs(job: Job): { id: string; name: string }[] {
  const text = JSON.stringify(job);
  const refs: { id: string; name: string }[] = [];
  for (const m of text.matchAll(/steps\.([A-Za-z_][A-Za-z0-9_-]*)\.outputs(?:\.([A-Za-z_][A-Za-z0-9_-]*)|\[\\?['"]([^'"\\]+)\\?['"]\])/g)) {
    refs.push({ id: m[1], name: m[2] ?? m[3] });
  }
  return refs;
}

test('the workflows to check are all there', () => {
  expect(EXAMPLES).toEqual(expect.arrayContaining(['build-and-smoke', 'nightly', 'publish-on-tag', 'matrix'].map((n) => `examples/workflows/${n}.yml`)));
  expect(OWN).toEqual(expect.arrayContaining(['.github/workflows/ci.yml', '.github/workflows/release.yml']));
});

describe.each(ALL)('%s', (file) => {
  test('parses as YAML, with on and jobs', () => {
    const wf = load(file);
    expect(wf).toHaveProperty('on');
    expect(wf.on).toBeTruthy();
    expect(typeof wf.jobs).toBe('object');
    expect(jobsOf(wf).length).toBeGreaterThan(0);
  });

  test('every job has runs-on and steps, and every step uses or runs something', () => {
    const problems: string[] = [];
    for (const [name, job] of jobsOf(load(file))) {
      if (!given(job['runs-on'])) problems.push(`${name}: no runs-on`);
      if (!Array.isArray(job.steps) || job.steps.length === 0) problems.push(`${name}: no steps`);
    }
    for (const { job, step, index } of stepsOf(load(file))) {
      if (!step || typeof step !== 'object' || (step.uses === undefined) === (step.run === undefined)) {
        problems.push(`${label(job, step ?? {}, index)}: needs exactly one of uses and run`);
      }
    }
    expect(problems).toEqual([]);
  });

  test('sets permissions (least privilege), for the workflow or each job', () => {
    const wf = load(file);
    const missing = jobsOf(wf)
      .filter(([, j]) => wf.permissions === undefined && j.permissions === undefined)
      .map(([n]) => n);
    expect(missing).toEqual([]);
  });

  test('passes the action only declared inputs, and every input it cannot work without', () => {
    const problems: string[] = [];
    for (const { job, step, index } of rivieraSteps(load(file))) {
      const where = label(job, step, index);
      const withs = step.with ?? {};
      for (const key of Object.keys(withs)) if (!INPUTS.includes(key)) problems.push(`${where}: '${key}' is not an input of action.yml`);
      const has = providedInputs(file, step);
      // The key only ever comes from the workflow, and never as literal text.
      if (!given(withs['private-key'])) problems.push(`${where}: no private-key`);
      else if (!String(withs['private-key']).includes('${{')) problems.push(`${where}: private-key must come from a secret or a step output, not be pasted in`);
      for (const key of ['known-hosts', 'host', 'username']) if (!has.has(key)) problems.push(`${where}: no ${key}`);
      for (const pair of [
        ['image', 'sif'],
        ['smoke-test', 'smoke-command'],
      ]) {
        const n = pair.filter((k) => has.has(k)).length;
        if (n !== 1) problems.push(`${where}: needs exactly one of ${pair.join(' and ')}, has ${n}`);
      }
    }
    expect(problems).toEqual([]);
  });

  test('reads only outputs the action declares, of steps that exist', () => {
    const problems: string[] = [];
    for (const [name, job] of jobsOf(load(file))) {
      const steps = Array.isArray(job.steps) ? job.steps : [];
      const ids = new Map(steps.filter((s) => s.id).map((s) => [s.id!, s]));
      for (const ref of outputRefs(job)) {
        const step = ids.get(ref.id);
        if (!step) problems.push(`${name}: steps.${ref.id} is not a step of this job`);
        else if (isRiviera(step) && !OUTPUTS.includes(ref.name)) problems.push(`${name}: '${ref.name}' is not an output of action.yml`);
      }
    }
    expect(problems).toEqual([]);
  });
});

describe('the examples', () => {
  test.each(EXAMPLES)('%s uses the published action (org/riviera-singularity@v1)', (file) => {
    const steps = rivieraSteps(load(file));
    expect(steps.length).toBeGreaterThan(0);
    for (const { step } of steps) expect(step.uses).toBe('org/riviera-singularity@v1');
  });

  const riviera = (name: string) => {
    const steps = rivieraSteps(load(`examples/workflows/${name}.yml`));
    expect(steps).toHaveLength(1);
    return steps[0];
  };
  const triggers = (name: string) => load(`examples/workflows/${name}.yml`).on as Record<string, unknown>;

  test('build-and-smoke runs on push and pull_request and uses the outputs in a later step', () => {
    expect(Object.keys(triggers('build-and-smoke'))).toEqual(expect.arrayContaining(['push', 'pull_request']));
    const { job, step, index } = riviera('build-and-smoke');
    expect(step.with).toMatchObject({ 'smoke-test': 'pytorch-cuda.py', partition: 'short-gpu' });
    const later = load('examples/workflows/build-and-smoke.yml').jobs![job].steps!.slice(index + 1);
    expect(JSON.stringify(later)).toContain(`steps.${step.id}.outputs.`);
  });

  test('nightly runs on a schedule and by hand, and tests the published .sif without building', () => {
    expect(Object.keys(triggers('nightly'))).toEqual(expect.arrayContaining(['schedule', 'workflow_dispatch']));
    const { step } = riviera('nightly');
    expect(String(step.with?.sif)).toMatch(/_latest\.sif$/);
    expect(step.with).not.toHaveProperty('image');
    expect(String(step.with?.build ?? '')).not.toBe('true');
  });

  test('publish-on-tag runs on version tags, publishes (auto) and prints published-path', () => {
    const push = triggers('publish-on-tag').push as { tags?: string[]; branches?: unknown };
    expect(push.tags).toEqual(['v*']);
    expect(push.branches).toBeUndefined();
    const { job, step, index } = riviera('publish-on-tag');
    expect(String(step.with?.publish ?? 'auto')).not.toBe('false');
    expect(step.with).toHaveProperty('publish-group');
    expect(step.with).toHaveProperty('keep-versions');
    const later = load('examples/workflows/publish-on-tag.yml').jobs![job].steps!.slice(index + 1);
    expect(JSON.stringify(later)).toContain(`steps.${step.id}.outputs.published-path`);
  });

  test('matrix spans partition and gpus, without fail-fast, with a job name per cell', () => {
    const { job, step } = riviera('matrix');
    const strategy = load('examples/workflows/matrix.yml').jobs![job].strategy;
    expect(strategy?.['fail-fast']).toBe(false);
    expect(Object.keys(strategy?.matrix ?? {})).toEqual(expect.arrayContaining(['partition', 'gpus']));
    expect(step.with).toMatchObject({ partition: '${{ matrix.partition }}', gpus: '${{ matrix.gpus }}' });
    expect(String(step.with?.['job-name'])).toMatch(/matrix\.partition[\s\S]*matrix\.gpus|matrix\.gpus[\s\S]*matrix\.partition/);
  });
});

test('the CI workflow runs the action from the checkout (uses: ./)', () => {
  expect(OWN.flatMap((f) => rivieraSteps(load(f))).filter(({ step }) => step.uses === './').length).toBeGreaterThan(0);
});

describe('action.yml', () => {
  test('runs on node24 with main and post', () => {
    expect(action.runs?.using).toBe('node24');
    for (const entry of [action.runs?.main, action.runs?.post]) {
      expect(typeof entry).toBe('string');
      expect(existsSync(join(ROOT, String(entry)))).toBe(true);
    }
  });

  test('has what the Marketplace requires: name, a short description, author and branding', () => {
    for (const field of [action.name, action.description, action.author]) {
      expect(typeof field).toBe('string');
      expect(String(field).trim()).not.toBe('');
    }
    expect(String(action.description).length).toBeLessThanOrEqual(MAX_DESCRIPTION);
    expect(typeof action.branding?.icon).toBe('string');
    expect(String(action.branding?.icon)).not.toBe('');
    expect(BRANDING_COLORS).toContain(action.branding?.color);
  });

  test('describes every input and output', () => {
    const undescribed = [
      ...Object.entries(action.inputs ?? {}).map(([k, v]) => ['input', k, v] as const),
      ...Object.entries(action.outputs ?? {}).map(([k, v]) => ['output', k, v] as const),
    ]
      .filter(([, , v]) => typeof v?.description !== 'string' || v.description.trim() === '')
      .map(([kind, k]) => `${kind} ${k}`);
    expect(INPUTS.length).toBeGreaterThan(0);
    expect(OUTPUTS.length).toBeGreaterThan(0);
    expect(undescribed).toEqual([]);
  });

  test('declares exactly the inputs the code reads', () => {
    // `config` is read by the action itself, the rest by the settings parser.
    expect([...INPUTS].sort()).toEqual([...INPUT_NAMES, 'config'].sort());
  });
});

describe('README.md', () => {
  const normalise = (s: string) => s.replace(/\r\n/g, '\n').trimEnd();
  test.each(EXAMPLES)('shows %s verbatim in a ```yaml block', (file) => {
    if (!existsSync(join(ROOT, 'README.md'))) throw new Error('README.md does not exist');
    const blocks = [...read('README.md').matchAll(/^```ya?ml[^\n]*\n([\s\S]*?)^```[ \t]*$/gm)].map((m) => normalise(m[1]));
    const example = normalise(read(file));
    if (!blocks.some((b) => b.includes(example))) {
      throw new Error(`${file} is not in any \`\`\`yaml block of README.md (${blocks.length} blocks): paste it in unchanged`);
    }
  });
});
