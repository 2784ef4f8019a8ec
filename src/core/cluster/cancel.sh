# Cancel a job (scancel: SIGTERM to the job, whose trap records it).
# Parameters: login_modules (array), job_id.
load_login_modules
scancel "$job_id"
