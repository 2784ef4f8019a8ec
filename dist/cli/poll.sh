# One poll of a submitted job, from the login node: what Slurm says (`OK <state|reason|nodes>`,
# `OK ` when it does not list the job, `ERR <squeue's error>` when squeue failed: the controller
# does not answer, or does not know the job), the job's own status line, then the job's output
# from byte `offset` on (at most `chunk` bytes). Exits no_job_dir (98) when there is no such job dir.
# Parameters: login_modules (array), job_dir, job_id, offset, chunk, no_job_dir, heartbeat (1: touch
# heartbeat_file, which tells the job's watchdog it is followed), and the names layout.ts gives
# the files in job_dir: status_file, output_file, heartbeat_file.
load_login_modules
cd "$job_dir" || exit "$no_job_dir"
if [ "$heartbeat" = 1 ]; then touch "$heartbeat_file"; fi
# squeue waits for an unreachable controller up to its MessageTimeout and retries: bound it.
if st=$(timeout 60 squeue -h -t all -j "$job_id" -o '%T|%r|%N' 2>&1); then
  printf 'OK %s\n' "$(printf '%s\n' "$st" | grep -m 1 '|')"
else
  printf 'ERR %s\n' "$(printf '%s' "${st:-squeue timed out}" | tr '\n' ' ')"
fi
printf '%s\n' "$(head -n 1 "$status_file" 2>/dev/null)"
tail -c +"$((offset + 1))" "$output_file" 2>/dev/null | head -c "$chunk"
