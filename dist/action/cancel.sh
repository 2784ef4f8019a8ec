# Cancel a delivery's job (scancel: SIGTERM to the job, whose trap records it), by its id or, when
# the delivery never learnt the id, by its job directory: sbatch's kept answer, else the job Slurm
# lists with that work directory (a submission cut off before it kept the answer). Prints the id
# cancelled (nothing: no job). A job that has already ended is no failure.
# A delivery that ended before any job existed also releases its run's hold here (under the submit
# lock, once no job is found), so that garbage collection may take the image's blobs at once rather
# than after a day; a job's hold stays until Slurm no longer knows the job.
# Parameters: login_modules (array), job_id ('' = find it), job_dir ('' = none yet), hold ('' =
# keep it), submitted_file, submit_lock.
# A relative hold is under the home directory, as every path input is.
case $hold in '' | /*) ;; *) hold=$HOME/$hold ;; esac
load_login_modules
if [ -z "$job_id" ] && [ -n "$job_dir" ] && cd -- "$job_dir" 2>/dev/null; then
  # Wait for a submission still under way.
  exec 9>>"$submit_lock" && flock -w 60 9
  job_id=$(head -n 1 "$submitted_file" 2>/dev/null)
  job_id=${job_id%%;*}
  if [ -z "$job_id" ]; then job_id=$(job_in_dir "$job_dir") || exit 75; fi
fi
if [ -z "$job_id" ]; then
  [ -z "$hold" ] || rm -f -- "$hold"
  exit 0
fi
if ! err=$(scancel "$job_id" 2>&1); then
  case $err in
    *"already completing or completed"* | *"Invalid job id specified"*) ;;
    *) echo "$err" >&2; exit 1 ;;
  esac
fi
echo "$job_id"
