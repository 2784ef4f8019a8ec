// Inputs as the runner passes them (INPUT_* variables), into the core's raw map. The key is masked
// first, before validation could echo any of it.
import * as core from '@actions/core';
import { INPUT_NAMES, type RawInputs, maskPrivateKey } from '../core/settings.js';

export function readInputs(): RawInputs {
  maskPrivateKey(core.getInput('private-key'), core.setSecret);
  const raw: Record<string, string> = {};
  for (const name of INPUT_NAMES) raw[name] = core.getInput(name, { trimWhitespace: name !== 'private-key' });
  return raw;
}
