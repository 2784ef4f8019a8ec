# Write a delivery's job files into its job directory and submit the job, in one round trip,
# exactly once per job directory, whatever is retried or cut off when: attempts take turns
# (submit_lock), a dropped link does not stop one half-way, sbatch's answer is kept (submitted),
# and an attempt cut off between sbatch and keeping the answer left a job that Slurm lists with
# this work directory. The files come on stdin, one after the other, once the script has said
# `ready` (first thing: they travel while it takes the lock and asks Slurm, and are left unread
# if the job exists already): the job script, the manifest, the smoke file (sizes in the
# parameters; never in argv).
# A fresh submission also prints `cpus N` (what the job asks for), after a `note ...` line if
# that is fewer than build_cpus.
# Parameters: group ('' = private), job_dir, script_size, manifest_size ('' = none), smoke_name
# ('' = none) and smoke_size, login_modules (array), sbatch (array: the argv, with a
# --cpus-per-task=N that is lowered to what a node of partition has), partition, build_cpus, and
# the names layout.ts gives: script_file, manifest_file, submitted_file, submit_lock, heartbeat_file (in job_dir),
# job_link_prefix (+ the job id: the link back to job_dir), hold (the run's hold, which gets
# `job ID`: garbage collection keeps what it holds while Slurm knows the job).
if [ -n "$group" ]; then umask 027; else umask 077; fi
trap '' HUP PIPE
echo ready
mkdir -p -- "$job_dir" && cd -- "$job_dir" || exit 1
exec 9>"$submit_lock" && flock 9 || exit 1

# jobs/job-ID finds the job's directory again (status, logs).
answer() {
  ln -sfn "$job_dir" "$job_link_prefix${1%%;*}"
  echo "$1"
  exit 0
}
# The run's hold names its job: garbage collection keeps what it holds while Slurm knows the job.
held() { printf 'job %s\n' "${1%%;*}" >> "$hold"; }
if [ -s "$submitted_file" ]; then answer "$(cat "$submitted_file")"; fi
load_login_modules
found=$(job_in_dir "$job_dir") || exit 75
if [ -n "$found" ]; then
  held "$found"
  printf '%s\n' "$found" > "$submitted_file"
  answer "$found"
fi

# Each file under a temporary name, renamed once it arrived whole.
receive() {
  local tmp
  tmp=$(mktemp "$1.XXXXXX") && head -c "$2" > "$tmp" && [ "$(wc -c < "$tmp")" -eq "$2" ] && mv -f "$tmp" "$1" && return 0
  rm -f "$tmp"
  echo "$1 did not arrive whole" >&2
  exit 1
}
receive "$script_file" "$script_size"
if [ -n "$manifest_size" ]; then receive "$manifest_file" "$manifest_size"; fi
if [ -n "$smoke_name" ]; then receive "$smoke_name" "$smoke_size"; fi
touch "$heartbeat_file" || exit 1
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
out=$("${sbatch[@]}") || exit $?
echo "cpus $cpus"
held "$out"
tmp=$(mktemp "$submitted_file.XXXXXX") && printf '%s\n' "$out" > "$tmp" && mv -f "$tmp" "$submitted_file"
answer "$out"
