// The CLI's entry: run it, then exit (pending SSH keepalive timers must not hold the process open).
import { runCli } from './program.js';

process.exit(await runCli(process.argv));
