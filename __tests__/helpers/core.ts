// A typed stand-in for @actions/core, registered with jest.unstable_mockModule before the action's
// modules are imported (as actions/typescript-action's __fixtures__/core.ts). Inputs and state are
// plain maps the test fills; everything the action writes is recorded.
import { jest } from '@jest/globals';
import type * as core from '@actions/core';

export const inputs: Record<string, string> = {};
export const state: Record<string, string> = {};
export const outputs: Record<string, unknown> = {};
export const saved: Record<string, unknown> = {};

export const getInput = jest.fn<typeof core.getInput>((name, opts) => {
  const v = inputs[name] ?? '';
  return opts?.trimWhitespace === false ? v : v.trim();
});
export const getState = jest.fn<typeof core.getState>((name) => state[name] ?? '');
export const saveState = jest.fn<typeof core.saveState>((name, value) => void (saved[name] = value));
export const setOutput = jest.fn<typeof core.setOutput>((name, value) => void (outputs[name] = value));
export const setFailed = jest.fn<typeof core.setFailed>();
export const setSecret = jest.fn<typeof core.setSecret>();
export const info = jest.fn<typeof core.info>();
export const warning = jest.fn<typeof core.warning>();
export const debug = jest.fn<typeof core.debug>();
export const startGroup = jest.fn<typeof core.startGroup>();
export const endGroup = jest.fn<typeof core.endGroup>();

/** Forget every call and value between tests. */
export function reset(): void {
  for (const m of [inputs, state, outputs, saved]) for (const k of Object.keys(m)) delete m[k];
  for (const f of [getInput, getState, saveState, setOutput, setFailed, setSecret, info, warning, debug, startGroup, endGroup]) f.mockClear();
}
