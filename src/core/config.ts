// Settings shared by CI and the terminal: an optional YAML file in the repository (.riviera.yml)
// whose keys are the action's input names. Explicit inputs, flags and variables win over it.
import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import { InputError } from './errors.js';
import { INPUT_NAMES, type RawInputs } from './settings.js';

export const CONFIG_FILE = '.riviera.yml';

/** Inputs that must never sit in a file in the repository. */
const SECRET = new Set(['private-key', 'private-key-passphrase']);

/** Parse the config file's text into raw inputs (lists become one item per line). Pure. */
export function parseConfig(text: string, path: string): Record<string, string> {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (e) {
    throw new InputError('config', `${path} is not valid YAML: ${(e as Error).message}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new InputError('config', `${path} must be a mapping of input names to values`);
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
    if (SECRET.has(key)) throw new InputError('config', `${path} must not hold '${key}': pass it as a secret (action) or a file path (CLI)`);
    if (!INPUT_NAMES.includes(key))
      throw new InputError('config', `unknown setting '${key}' in ${path}`, `Known settings: ${INPUT_NAMES.filter((n) => !SECRET.has(n)).join(', ')}`);
    if (value === null || value === undefined) continue;
    if (Array.isArray(value) && value.every((v) => ['string', 'number', 'boolean'].includes(typeof v))) out[key] = value.join('\n');
    else if (['string', 'number', 'boolean'].includes(typeof value)) out[key] = String(value);
    else throw new InputError('config', `'${key}' in ${path} must be a string, number, boolean or list of them`);
  }
  return out;
}

/** Read the config file; a missing file is fine unless it was asked for by name. */
export async function loadConfig(path: string, explicit: boolean): Promise<Record<string, string>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if (!explicit && (e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new InputError('config', `cannot read ${path}: ${(e as Error).message}`);
  }
  return parseConfig(text, path);
}

/** Layer raw inputs: a later layer's non-empty value wins. */
export function mergeInputs(...layers: RawInputs[]): RawInputs {
  const out: Record<string, string | undefined> = {};
  for (const layer of layers) {
    for (const [k, v] of Object.entries(layer)) if (v !== undefined && v !== '') out[k] = v;
  }
  return out;
}
