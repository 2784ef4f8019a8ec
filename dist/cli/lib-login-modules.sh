# Library, put after the parameters of the scripts that run Slurm commands on the login node.

# Load the login-node modules (parameter login_modules) that provide the Slurm commands; none: do
# nothing, so a cluster without a module system works. Exit 97 tells the caller the load failed.
load_login_modules() {
  [ "${#login_modules[@]}" -eq 0 ] && return 0
  module load "${login_modules[@]}" >/dev/null 2>&1 || { echo "module load ${login_modules[*]} failed on the login node" >&2; exit 97; }
}
