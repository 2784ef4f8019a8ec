# Garbage collection, under the exclusive store lock (skipped, not waited for, when deliveries are
# sending or preparing): keep the newest image records and every image a queued or running job
# holds, drop the blobs and .sif files no kept record names, old partial uploads, and old job
# directories whose job Slurm no longer knows. It removes only names the tool makes (HEX.sif,
# run directories); when Slurm does not answer, it removes nothing.
# Parameters: keep_images, max_age_minutes, login_modules (array), run_glob (the shell pattern of a
# run's name), and the paths layout.ts names: store (the directory, where the lists are made),
# store_lock, records (the image records), holds (one per run: `image HEX` lines, `job ID` once
# submitted), blobs, incoming, sifs (HEX.sif, kept while the record HEX is), jobs (RUN/ and job-ID
# links).
cd -- "$store" || exit 0
exec 8>"$store_lock"; flock -x -w 5 8 || { echo "gc skipped: the store is in use"; exit 0; }

# --- What jobs hold: Slurm is asked once; a hold is released once Slurm no longer knows its job,
# or after a day if its delivery never submitted one.
load_login_modules
active=$(squeue -h -u "$(id -un)" -o %A) || { echo "gc skipped: Slurm did not answer (squeue), so nothing is removed"; exit 0; }
known() { [ -n "$1" ] && printf '%s\n' "$active" | grep -qx -- "$1"; }
held=$(mktemp held.XXXXXX) || exit 1
keep=$(mktemp keep.XXXXXX) || exit 1
trap 'rm -f "$held" "$keep"' EXIT
for h in "$holds"/*; do
  [ -f "$h" ] || continue
  job=$(sed -n 's/^job \([0-9][0-9_]*\).*/\1/p' "$h" | tail -n 1)
  if { [ -n "$job" ] && ! known "$job"; } || { [ -z "$job" ] && [ -n "$(find "$h" -mmin +1440)" ]; }; then
    rm -f "$h"; continue
  fi
  sed -n 's/^image \([0-9a-f]*\)$/\1/p' "$h" >> "$held"
done

# --- Image records: the newest keep_images, younger than max-age, and every held one
is_held() { grep -qx -- "$1" "$held"; }
find "$records" -type f -name '[0-9a-f]*' ! -name '*.tmp.*' -mmin +"$max_age_minutes" | while read -r f; do
  is_held "${f##*/}" || rm -f "$f"
done
# Record names are hex digests (or HEX.tmp.PID), safe to read from ls, which orders them by age.
# shellcheck disable=SC2010
ls -t "$records" | grep -v '\.tmp\.' | tail -n +"$((keep_images + 1))" | while read -r i; do
  is_held "$i" || rm -f "$records/$i"
done
cat "$records"/* 2>/dev/null | sort -u > "$keep"
removed_blobs=0; removed_sifs=0
for f in "$blobs"/*; do
  [ -e "$f" ] || continue
  grep -qx "${f##*/}" "$keep" || { rm -f "$f"; removed_blobs=$((removed_blobs+1)); }
done
for f in "$sifs"/*.sif; do
  h=${f##*/}; h=${h%.sif}
  # Only the tool's own .sif files, named by their image's digest.
  [[ $h =~ ^[0-9a-f]{64}$ ]] && [ -f "$f" ] || continue
  [ -e "$records/$h" ] || is_held "$h" || { rm -f "$f" "$f.sha256" "$f.verified" "$f".verified.??????; removed_sifs=$((removed_sifs+1)); }
done
find "$incoming" -type f -mmin +1440 -delete

# --- Job directories: only run directories, older than max-age, whose job Slurm no longer knows
removed_jobs=0
# shellcheck disable=SC2086 # run_glob is a pattern, to be expanded
for d in "$jobs"/$run_glob; do
  [ -d "$d" ] && [ ! -L "$d" ] && [ -n "$(find "$d" -maxdepth 0 -mmin +"$max_age_minutes")" ] || continue
  [ -e "$holds/${d##*/}" ] && continue
  job=$(cut -d';' -f1 "$d/submitted" 2>/dev/null)
  known "$job" && continue
  rm -rf -- "$d"; removed_jobs=$((removed_jobs+1))
done
# The job-ID links whose directory is gone.
find "$jobs" -mindepth 1 -maxdepth 1 -name 'job-*' -xtype l -delete
echo "gc removed $removed_blobs blob(s), $removed_sifs .sif file(s) and $removed_jobs job directory(ies)"
