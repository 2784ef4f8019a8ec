#!/bin/bash -l
# The batch job of a delivery (sbatch runs it; a login shell, so that `module` exists): load the
# modules, assemble the image's docker-archive from the store and build the .sif (or test an
# existing one), run the smoke test, and publish the .sif once it passed. What the follower reads
# from the output are marker lines (jobscript.ts): `<marker> phase <phase> <epoch seconds>` as each
# phase starts, `<marker> gpu <where> <kind> <text>` for the GPU report; the job's end is recorded
# as `<phase> <exit code>` in status_file, which followers read whatever Slurm says.
# Parameters:
#   status_file, marker (the marker and this delivery's token, which the job's own output cannot
#   know by chance; a shell variable only, never exported to the smoke test), modules (array),
#   runtime (auto, singularity or apptainer),
#   tmpdir (the job makes its build temp dir under it, never /tmp),
#   sif (the .sif it builds or tests), sif_link (stable per-image link to it; '' = none),
#   smoke (array: argv after the runtime command),
#   gpus (GPUs asked for; 0: no GPU report), gpu_query (nvidia-smi --query-gpu fields),
#   cuda_majors and cuda_min_drivers (arrays: the oldest driver each CUDA major version runs on),
#   assemble (1/0: assemble the archive from the store and build sif; 0: test sif as it is),
#     store_lock (keeps garbage collection out while the blobs are read),
#     manifest (manifest.json, in the job directory), member_names and member_blobs (arrays:
#     the archive members in the legacy layout and the store blob each one is),
#   publication, once the smoke test passed ('' pub = not in this run):
#     pub (directory), pub_name, pub_name_field (`"name":NAME,` in JSON, as its records hold it),
#     pub_file (NAME_VERSION.sif), pub_record (NAME_VERSION.json),
#     pub_latest (NAME_latest.sif), pub_json (the record as JSON without its closing brace),
#     pub_mode (octal), pub_group ('' = none), pub_keep (versions to keep), pub_lock (in
#     remote-dir, one per publish directory).
#   watchdog (seconds; '' = none), watchdog_every (seconds between looks), heartbeat_file (the
#     delivery following the job touches it at every poll), watchdog_file (the job's own file, to
#     compare with), login_modules (array: what provides scancel).

# --- Bookkeeping: phases, status file, cleanup, signals
# Every line for the follower goes through mark: one marker, one token.
mark() { local IFS=' '; printf '%s %s\n' "$marker" "$*"; }
phase() { mark phase "$1" "$(date +%s.%N)"; current=$1; }
# The status file is written under a temporary name and renamed, so a reader never sees half of it.
record() { printf '%s %s\n' "$1" "$2" > "$status_file.tmp.$$" && mv -f "$status_file.tmp.$$" "$status_file"; }
child=
job_tmp=
pub_tmps=()
watchdog_pid=
cleanup() {
  [ -n "$watchdog_pid" ] && kill "$watchdog_pid" 2>/dev/null
  [ -n "$job_tmp" ] && rm -rf "$job_tmp"
  [ "${#pub_tmps[@]}" -gt 0 ] && rm -f -- "${pub_tmps[@]}"
  rm -f "$sif.tmp.$$" "$sif.sha256.tmp.$$" "$sif_link.tmp.$$" "$status_file.tmp.$$"
  phase end
}
# Work runs in the background and is waited for, so that scancel's SIGTERM reaches the trap at once.
on_signal() {
  [ -n "$child" ] && kill -TERM "$child" 2>/dev/null && wait "$child"
  record "$current" 143
  exit 143
}
trap on_signal TERM INT USR2
trap cleanup EXIT
current=start
run() { "$@" & child=$!; wait "$child"; local rc=$?; child=; return $rc; }
fail() { local rc=$1; shift; echo "riviera-singularity: $*" >&2; record "$current" "$rc"; exit "$rc"; }

# --- Watchdog: a job nobody has followed for `watchdog` seconds (the runner was lost without its
# post step) cancels itself, and one that starts only after that runs nothing. The age is the
# difference of two mtimes on the job directory's filesystem, both set by its server, so no clock
# of this node is trusted; opening the files first makes an NFS client revalidate their attributes.
heartbeat_age() {
  : > "$watchdog_file" && : < "$heartbeat_file" && : < "$watchdog_file" || return 1
  echo $(( $(stat -c %Y "$watchdog_file") - $(stat -c %Y "$heartbeat_file") ))
}
cancel_self() {
  echo "riviera-singularity: watchdog: no delivery has followed this job for $1 s (watchdog $watchdog s): cancelling it" >&2
  (load_login_modules && scancel "$SLURM_JOB_ID") || kill -TERM $$
}
if [ -n "$watchdog" ]; then
  age=$(heartbeat_age) || age=0
  if [ "$age" -gt "$watchdog" ]; then
    current=watchdog
    cancel_self "$age"
    run sleep 60 # scancel's SIGTERM ends the job here
    exit 124
  fi
  (
    while sleep "$watchdog_every"; do
      age=$(heartbeat_age) || continue
      if [ "$age" -gt "$watchdog" ]; then cancel_self "$age"; exit 0; fi
    done
  ) &
  watchdog_pid=$!
fi

# --- Modules and the container runtime (both runtimes read the same images and flags)
phase modules
if [ "${#modules[@]}" -gt 0 ]; then
  module load "${modules[@]}" || fail 127 "module load failed: check the module names with 'module avail'"
fi
case $runtime in
  auto)
    if command -v apptainer >/dev/null; then rt=apptainer
    elif command -v singularity >/dev/null; then rt=singularity
    else fail 127 "neither apptainer nor singularity after loading the modules: add one to 'modules'"; fi
    ;;
  *)
    rt=$runtime
    command -v "$rt" >/dev/null || fail 127 "no $rt command after loading the modules: add its module to 'modules'"
    ;;
esac
echo "riviera-singularity: $("$rt" --version 2>/dev/null | head -n 1)"

# Singularity and Apptainer read these (in this order); the node's /tmp is too small.
mkdir -p "$tmpdir" || fail 1 "cannot create the temp directory"
job_tmp=$(mktemp -d "$tmpdir/job-${SLURM_JOB_ID:-x}.XXXXXX") || fail 1 "cannot create a temp directory under the tmpdir"
export SINGULARITY_TMPDIR="$job_tmp" APPTAINER_TMPDIR="$job_tmp" TMPDIR="$job_tmp"
export SINGULARITY_CACHEDIR="$job_tmp/cache" APPTAINER_CACHEDIR="$job_tmp/cache"
if [ -n "$sif_link" ]; then
  mkdir -p "$(dirname "$sif")" "$(dirname "$sif_link")" || fail 1 "cannot create the .sif directories"
fi

# --- The .sif: assembled and built, or the existing one
if [ "$assemble" = 1 ]; then
  phase assemble
  # A docker-archive in the legacy layout, which every Singularity 3.x and Apptainer reads.
  arch="$job_tmp/archive"
  mkdir -p "$arch" && cp "$manifest" "$arch/manifest.json" || fail 1 "cannot stage the archive"
  for i in "${!member_names[@]}"; do
    name=${member_names[$i]}
    case $name in */*) dir=${name%/*} ;; *) dir=. ;; esac
    mkdir -p "$arch/$dir" && ln -sf "${member_blobs[$i]}" "$arch/$name" || fail 1 "cannot stage the archive"
  done
  exec 7>"$store_lock" || fail 1 "cannot open the store's lock: is the store there?"
  flock -s -w 600 7 || fail 75 "the image store is locked"
  tar -chf "$job_tmp/image.tar" -C "$arch" manifest.json "${member_names[@]}" || fail 1 "cannot assemble the archive from the store"
  exec 7>&-

  phase sif-build
  # mksquashfs uses every CPU it sees; under Slurm's cgroups, those the job asked for (--cpus-per-task).
  echo "riviera-singularity: the .sif build has ${SLURM_CPUS_PER_TASK:-every} CPU(s) of the node"
  run "$rt" build --force "$sif.tmp.$$" "docker-archive:$job_tmp/image.tar" || fail $? "singularity build failed"
  rm -f "$job_tmp/image.tar"
  # Its digest beside it, so the next delivery can tell the .sif is intact before reusing it.
  printf '%s  %s\n' "$(sha256 < "$sif.tmp.$$")" "$(basename "$sif")" > "$sif.sha256.tmp.$$" || fail 1 "cannot write the .sif digest"
  mv -f "$sif.tmp.$$" "$sif" && mv -f "$sif.sha256.tmp.$$" "$sif.sha256"
else
  phase sif-build
  [ -s "$sif" ] || fail 1 "no .sif at $sif"
  echo "riviera-singularity: using the existing $sif"
fi
if [ -n "$sif_link" ]; then
  ln -sfn "$sif" "$sif_link.tmp.$$" && mv -Tf "$sif_link.tmp.$$" "$sif_link"
fi

# --- GPU report: the node's GPUs and driver, outside the container and inside it (--nv), and the
# CUDA version the image declares, as `<marker> gpu <where> <kind> <text>` lines. An image whose CUDA
# major version needs a newer driver than the node has stops here, before the smoke test.
if [ "$gpus" -gt 0 ]; then
  phase gpu-check
  report() { while IFS= read -r l; do mark gpu "$1" "$l"; done; }
  hostname | report node
  query=$(nvidia-smi --query-gpu="$gpu_query" --format=csv,noheader 2>&1)
  banner=$(nvidia-smi 2>&1 | grep -m 1 'CUDA Version')
  printf '%s\n' "$query" | report 'outside query'
  printf '%s\n' "$banner" | report 'outside header'
  # Inside, shell builtins only (the image may have no grep or sed); the image's own environment.
  # shellcheck disable=SC2016 # expanded in the container
  probe='p() { while IFS= read -r l; do echo "$1 $l"; done; }
nvidia-smi --query-gpu="$0" --format=csv,noheader 2>&1 | p query
nvidia-smi 2>&1 | while IFS= read -r l; do case $l in *"CUDA Version"*) echo "header $l" ;; esac; done
echo "env ${CUDA_VERSION:-}"
if [ -r /usr/local/cuda/version.json ]; then p json < /usr/local/cuda/version.json; fi'
  # Through run, into a file: scancel's SIGTERM must reach the trap at once here too.
  run "$rt" exec --cleanenv --nv "$sif" /bin/sh -c "$probe" "$gpu_query" > "$job_tmp/gpu-inside" 2>/dev/null
  inside=$(cat "$job_tmp/gpu-inside")
  printf '%s\n' "$inside" | report inside
  image_cuda=$(printf '%s\n' "$inside" | sed -n 's/^env \([0-9][0-9.]*\)$/\1/p')
  if [ -z "$image_cuda" ]; then
    image_cuda=$(printf '%s\n' "$inside" | sed -n 's/^json //p' | tr -d '\n' \
      | sed -n 's/.*"cuda"[[:space:]]*:[[:space:]]*{[^}]*"version"[[:space:]]*:[[:space:]]*"\([0-9.]*\)".*/\1/p')
  fi
  driver=$(printf '%s\n' "$query" | sed -n '1s/^[^,]*, *\([0-9][0-9.]*\),.*/\1/p')
  driver_cuda=$(printf '%s\n' "$banner" | sed -n 's/.*CUDA Version: *\([0-9][0-9.]*\).*/\1/p')
  older() { [ "$1" != "$2" ] && [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" = "$1" ]; }
  if [ -n "$image_cuda" ] && [ -n "$driver" ]; then
    need=
    for i in "${!cuda_majors[@]}"; do
      [ "${image_cuda%%.*}" = "${cuda_majors[$i]}" ] && need=${cuda_min_drivers[$i]}
    done
    # Outside the table (before CUDA 11, or newer than it knows) no minor version compatibility.
    if { [ -n "$need" ] && older "$driver" "$need"; } \
      || { [ -z "$need" ] && [ -n "$driver_cuda" ] && older "$driver_cuda" "$(printf '%s' "$image_cuda" | cut -d. -f1,2)"; }; then
      fail 3 "the image's CUDA $image_cuda needs NVIDIA driver >= ${need:-one supporting it}, but $(hostname) has $driver (CUDA ${driver_cuda:-?})"
    fi
  fi
fi

# --- The smoke test
phase smoke-test
run "$rt" "${smoke[@]}"
rc=$?
[ "$rc" = 0 ] || { record smoke-test "$rc"; exit "$rc"; }

# --- Publication, only after the smoke test passed. The publish directory may be a lab's, where
# every member may rename or replace any entry: so each file is created exclusively (noclobber opens
# with O_EXCL: never through a planted link) under an unpredictable name, written, chmod'ed and
# chgrp'ed only through its descriptor, renamed into place, and checked to be the file written.
# NAME_latest.sif is switched by renaming a new link over it; our older versions beyond pub_keep
# are removed. The lock, in remote-dir where only we write, serialises our publications there.
if [ -n "$pub" ]; then
  phase publish
  exec 6>>"$pub_lock" || fail 1 "cannot open the publication lock $pub_lock"
  flock -w 600 6 || fail 75 "another publication into $pub is still running"
  # create: a new file in $pub, its descriptor in $fd and its name in $tmp (also in pub_tmps, which
  # cleanup removes).
  create() {
    local rc
    tmp=$(mktemp -u -- "$pub/.riviera-XXXXXXXXXX") || return 1
    pub_tmps+=("$tmp")
    set -C; exec {fd}>"$tmp"; rc=$?; set +C
    return "$rc"
  }
  # settle FD TMP NAME: mode and group through the descriptor, then the rename, then the check
  # that NAME is now the file written.
  settle() {
    chmod -- "$pub_mode" "/dev/fd/$1" && { [ -z "$pub_group" ] || chgrp -- "$pub_group" "/dev/fd/$1"; } \
      && mv -Tf -- "$2" "$pub/$3" && [ ! -L "$pub/$3" ] && [ "$pub/$3" -ef "/dev/fd/$1" ]
  }
  where="in $pub (is it writable, and is $pub_group your group?)"
  create && sif_fd=$fd && sif_tmp=$tmp || fail 1 "cannot create a file $where"
  # The digest of the bytes published, taken as they are written.
  sum=$(set -o pipefail; tee -- "/dev/fd/$sif_fd" < "$sif" | sha256) && [ -n "$sum" ] || fail 1 "cannot copy the .sif to $pub"
  create && printf '%s  %s\n' "$sum" "$pub_file" >&"$fd" && settle "$fd" "$tmp" "$pub_file.sha256" || fail 1 "cannot publish $pub_file.sha256 $where"
  exec {fd}>&-
  create && printf '%s,"job":"%s","date":"%s","sha256":"%s"}\n' "$pub_json" "${SLURM_JOB_ID:-}" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$sum" >&"$fd" \
    && settle "$fd" "$tmp" "$pub_record" || fail 1 "cannot publish $pub_record $where"
  exec {fd}>&-
  settle "$sif_fd" "$sif_tmp" "$pub_file" || fail 1 "cannot publish $pub_file $where"
  exec {sif_fd}>&-
  tmp=$(mktemp -u -- "$pub/.riviera-XXXXXXXXXX") && pub_tmps+=("$tmp") && ln -s -- "$pub_file" "$tmp" \
    && mv -Tf -- "$tmp" "$pub/$pub_latest" && [ "$(readlink -- "$pub/$pub_latest")" = "$pub_file" ] || fail 1 "cannot switch $pub_latest $where"
  echo "riviera-singularity: published $pub/$pub_file"
  # Our older versions of this name (its records tell them from other names sharing the prefix);
  # never a link, nor anyone else's file.
  ls -t -- "$pub/${pub_name}_"*.sif 2>/dev/null | while read -r f; do
    [ ! -L "$f" ] && [ -O "$f" ] && grep -qF -- "$pub_name_field" "${f%.sif}.json" 2>/dev/null && echo "$f"
  done | tail -n +"$((pub_keep + 1))" | while read -r f; do
    for x in "$f" "$f.sha256" "${f%.sif}.json"; do [ ! -L "$x" ] && [ -O "$x" ] && rm -f -- "$x"; done
  done
  exec 6>&-
fi
record smoke-test 0
exit 0
