// Inputs as the runner passes them (INPUT_* variables), layered over the repository's .riviera.yml,
// into the core's raw map. The key is masked first, before validation could echo any of it.
import { join, resolve } from 'node:path';
import * as core from '@actions/core';
import { CONFIG_FILE, loadConfig, mergeInputs } from '../core/config.js';
import { INPUT_NAMES, type RawInputs, type RunContext, maskPrivateKey } from '../core/settings.js';

export async function readInputs(): Promise<RawInputs> {
  maskPrivateKey(core.getInput('private-key'), core.setSecret);
  const passphrase = core.getInput('private-key-passphrase');
  if (passphrase) core.setSecret(passphrase);
  const explicit: Record<string, string> = {};
  for (const name of INPUT_NAMES) explicit[name] = core.getInput(name, { trimWhitespace: name !== 'private-key' });
  const configInput = core.getInput('config');
  const workspace = process.env.GITHUB_WORKSPACE || process.cwd();
  const file = await loadConfig(resolve(workspace, configInput || join('.', CONFIG_FILE)), !!configInput);
  return mergeInputs(file, explicit);
}

/** The run's provenance, for publication: a tag run publishes by default. */
export function githubContext(env: NodeJS.ProcessEnv = process.env): RunContext {
  const server = env.GITHUB_SERVER_URL || 'https://github.com';
  return {
    repository: env.GITHUB_REPOSITORY ? `${server}/${env.GITHUB_REPOSITORY}` : '',
    commit: env.GITHUB_SHA ?? '',
    tag: env.GITHUB_REF_TYPE === 'tag' && env.GITHUB_REF_NAME ? env.GITHUB_REF_NAME : null,
  };
}
