# Preflight, on the login node: what the cluster says about a delivery's inputs, before anything is
# saved, sent or submitted. It creates, loads for good and submits nothing; it reports on stdout,
# one fact per line:
#   pf slurm RC            the login modules loaded and sbatch is there (0), else why not
#   pf scontrol LINE       each line of `scontrol show partition -o`
#   pf sinfo P|G           each line of `sinfo -h -o '%P|%G'` (the GPUs of each group of nodes)
#   pf testonly LINE       what `sbatch --test-only` says of the job's own options,
#   pf testonly-rc RC      and its exit code
#   pf module NAME RC      the module exists (0): it loaded with the others (Lmod), or
#                          `module is-avail NAME` says so
#   pf modload RC          loading all the modules, in a subshell
#   pf runtime PATH|-      the container runtime found after loading them
#   pf dir LABEL W KIB IFREE ITOTAL PATH   the directory, or its nearest existing parent: writable
#                          (1/0), free KiB and inodes for the user (statfs, as df), total inodes
#   pf sacct RC            sacct answers (0: the cluster has accounting)
# Exit 10: a directory is not writable (the caller goes no further).
# Parameters: login_modules (array), sbatch_test (array: sbatch with the job's own options and
# --test-only; the job script comes on stdin), modules (array), runtime (auto, singularity or
# apptainer), dir_labels and dir_paths (arrays: input names and their paths, relative to home).

# Each fact waits on slurmctld or on the module tree, not on another fact: they are gathered at
# once, each into a pipe of its own, and printed in order at the end.
pending=()
gather() {
  local fd
  exec {fd}< <("$@")
  pending+=("$fd")
}

# --- Slurm, through the login modules (loaded here, for the module checks too)
slurm=0
if [ "${#login_modules[@]}" -gt 0 ]; then module load "${login_modules[@]}" >/dev/null 2>&1 || slurm=97; fi
[ "$slurm" != 0 ] || command -v sbatch >/dev/null 2>&1 || slurm=127
echo "pf slurm $slurm"
partitions() { scontrol show partition -o 2>&1 | sed 's/^/pf scontrol /'; }
gpus() { sinfo -h -o '%P|%G' 2>&1 | sed 's/^/pf sinfo /'; }
test_only() {
  local out rc
  out=$(printf '#!/bin/sh\ntrue\n' | "${sbatch_test[@]}" 2>&1)
  rc=$?
  printf '%s\n' "$out" | sed 's/^/pf testonly /'
  echo "pf testonly-rc $rc"
}
accounting() {
  sacct -n -X -j 1 -o JobID >/dev/null 2>&1
  echo "pf sacct $?"
}
if [ "$slurm" = 0 ]; then
  gather partitions
  gather gpus
  gather test_only
  gather accounting
fi

# --- Modules: each exists; together they give a container runtime (loaded in a subshell only).
# Under Lmod a load succeeds only if every module exists, and a failed one changes nothing: a
# good load says both (an Lmod call costs tens of ms of CPU). A failed load, or another module
# system, asks is-avail of each module, to name the missing one.
modules_exist() {
  local m
  for m in "${modules[@]}"; do
    module is-avail "$m" >/dev/null 2>&1
    echo "pf module $m $?"
  done
}
modules_and_runtime() {
  local rc rt
  if [ "${#modules[@]}" -gt 0 ]; then
    module load "${modules[@]}" >/dev/null 2>&1
    rc=$?
    if [ -n "${LMOD_CMD:-}" ]; then
      if [ "$rc" = 0 ]; then printf 'pf module %s 0\n' "${modules[@]}"; else modules_exist; fi
    fi
    echo "pf modload $rc"
    [ "$rc" = 0 ] || { echo "pf runtime -"; return 0; }
  fi
  case $runtime in
    auto) rt=$(command -v apptainer || command -v singularity) ;;
    *) rt=$(command -v "$runtime") ;;
  esac
  echo "pf runtime ${rt:--}"
}
if [ "${#modules[@]}" -gt 0 ] && [ -z "${LMOD_CMD:-}" ]; then gather modules_exist; fi
gather modules_and_runtime

# --- Directories: writable, with room and inodes (the nearest existing parent of a new one)
writable=1
for i in "${!dir_labels[@]}"; do
  d=${dir_paths[$i]}
  while [ ! -e "$d" ]; do d=$(dirname -- "$d"); done
  d=$(cd -- "$d" 2>/dev/null && pwd -P || printf '%s' "$d")
  w=0
  if [ -d "$d" ] && [ -w "$d" ] && [ -x "$d" ]; then w=1; else writable=0; fi
  # statfs, as df reads it: blocks available to the user, their size, free and total inodes.
  space=- inodes='- -'
  if fs=$(stat -f -c '%a %S %d %c' -- "$d" 2>/dev/null); then
    read -r avail bsize ifree itotal <<<"$fs"
    space=$((avail * bsize / 1024)) inodes="$ifree $itotal"
  fi
  echo "pf dir ${dir_labels[$i]} $w $space $inodes $d"
done

for fd in "${pending[@]}"; do cat <&"$fd"; done
[ "$writable" = 1 ] || exit 10
