# One poll of a submitted job, from the login node: Slurm's state line, the job's own status line,
# then the job's output from byte `offset` on (at most `chunk` bytes). Exits no_job_dir (98) when
# there is no such job dir. Parameters: login_modules (array), job_dir, job_id, offset, chunk,
# no_job_dir, and the names layout.ts gives the files in job_dir: status_file, output_file.
load_login_modules
cd "$job_dir" || exit "$no_job_dir"
st=$(squeue -h -t all -j "$job_id" -o '%T|%r|%N' 2>/dev/null | head -n 1)
printf '%s\n' "${st:-UNKNOWN}"
printf '%s\n' "$(head -n 1 "$status_file" 2>/dev/null)"
tail -c +"$((offset + 1))" "$output_file" 2>/dev/null | head -c "$chunk"
