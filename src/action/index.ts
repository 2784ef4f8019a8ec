// One bundle for both steps: the runner runs it as main, then again as post.
import { run } from './main.js';
import { post } from './post.js';
import { isPost } from './state.js';

await (isPost ? post() : run());
// Pending SSH keepalive timers must not hold the step open.
process.exit(process.exitCode ?? 0);
