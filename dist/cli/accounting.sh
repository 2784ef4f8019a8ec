# What Slurm's accounting recorded of a job and its steps, every run of it (-D: a requeued job has
# several), one parsable row each: JobID|State|ExitCode|DerivedExitCode|Reason|NodeList.
# Only asked where preflight found that sacct answers.
# Parameters: login_modules (array), job_id, fields (the sacct -o list).
load_login_modules
sacct -j "$job_id" -D -P -n -o "$fields"
