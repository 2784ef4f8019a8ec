# Write a delivery's job files into its job directory and submit the job, in one round trip.
# Prints `cpus N` (what the job asks for) and sbatch's answer, after a `note ...` line if it asks
# for fewer CPUs than build_cpus. That answer is also kept in the job directory (`submitted`), so a
# retry after a dropped connection finds the job instead of submitting it twice.
# Parameters: group ('' = private), job_dir, job_script_b64, manifest_b64 ('' = none),
# smoke_name ('' = none) and smoke_b64, login_modules (array), sbatch (array: the argv, with a
# --cpus-per-task=N that is lowered to what a node of partition has), partition, build_cpus, and
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
# No more CPUs than the partition's largest node has: a job asking for more would never start.
cpus=$build_cpus
most=$(sinfo -h -p "$partition" -o %c 2>/dev/null | tr -dc '0-9\n' | sort -n | tail -n 1)
if [ -n "$most" ] && [ "$most" -lt "$cpus" ]; then
  echo "note build-cpus $build_cpus is more than a node of partition $partition has: asking for $most"
  cpus=$most
fi
for i in "${!sbatch[@]}"; do
  case ${sbatch[i]} in --cpus-per-task=*) sbatch[i]=--cpus-per-task=$cpus; break ;; esac
done
out=$("${sbatch[@]}")
# jobs/job-ID finds the job's directory again (status, logs).
ln -sfn "$job_dir" "$job_link_prefix${out%%;*}"
# The run's hold now names its job: garbage collection keeps what it holds while Slurm knows the job.
printf 'job %s\n' "${out%%;*}" >> "$hold"
printf 'cpus %s\n%s\n' "$cpus" "$out" > submitted
cat submitted
