// Connecting to the cluster with the transport the settings ask for.
import type { Remote, SshTarget } from './remote.js';
import { Ssh2Remote } from './ssh2remote.js';

export type Connector = (target: SshTarget) => Promise<Remote>;

export const connectRemote: Connector = (target) => Ssh2Remote.connect(target);
