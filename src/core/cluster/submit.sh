# Write a delivery's job files into its job directory and submit the job, in one round trip.
# sbatch's answer is also kept in the job directory (`submitted`), so a retry after a dropped
# connection finds the job instead of submitting it twice.
# Parameters: group ('' = private), job_dir, job_script_b64, manifest_b64 ('' = none),
# smoke_name ('' = none) and smoke_b64, login_modules (array), sbatch (array: the argv), and
# the names layout.ts gives: script_file and manifest_file (in job_dir), job_link_prefix (+ the
# job id: the link back to job_dir), hold (the run's hold, which gets `job ID`).
if [ -n "$group" ]; then umask 027; else umask 077; fi
set -e
mkdir -p -- "$job_dir"; cd -- "$job_dir"
if [ -s submitted ]; then cat submitted; exit 0; fi

# The files arrive base64-encoded in the parameters.
printf %s "$job_script_b64" | base64 -d > "$script_file"
if [ -n "$manifest_b64" ]; then printf %s "$manifest_b64" | base64 -d > "$manifest_file"; fi
if [ -n "$smoke_name" ]; then printf %s "$smoke_b64" | base64 -d > "$smoke_name"; fi

load_login_modules
out=$("${sbatch[@]}")
# jobs/job-ID finds the job's directory again (status, logs).
ln -sfn "$job_dir" "$job_link_prefix${out%%;*}"
# The run's hold now names its job: garbage collection keeps what it holds while Slurm knows the job.
printf 'job %s\n' "${out%%;*}" >> "$hold"
printf '%s\n' "$out" > submitted
echo "$out"
