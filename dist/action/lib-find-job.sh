# Library: the job Slurm lists with a given work directory (sbatch --chdir, which is the job's
# directory: one per delivery), for a submission cut off before it kept sbatch's answer.

# Print the id of the job whose work directory is $1 (nothing: none). Exit 75 when Slurm does not answer.
job_in_dir() {
  local listed
  listed=$(squeue -h -t all -u "$(id -un)" -o '%Z|%i' 2>&1) || { echo "Slurm does not answer: $listed" >&2; exit 75; }
  # The id is after the last '|'; the directory, everything before it, may hold any character.
  printf '%s\n' "$listed" | d=$1 awk '{ id = $0; sub(/.*\|/, "", id); sub(/\|[^|]*$/, ""); if ($0 == ENVIRON["d"]) { print id; exit } }'
}
