# Garbage collection, under the exclusive store lock (skipped, not waited for, when deliveries are
# sending): keep the newest image records, drop the blobs and .sif files no kept record names, old
# partial uploads and old job directories.
# Parameters: keep_images, max_age_minutes, and the paths layout.ts names: store (the directory,
# where the list of kept blobs is made), store_lock, records (the image records), blobs, incoming,
# sifs (HEX.sif, kept while the record HEX is), jobs.
cd -- "$store" || exit 0
exec 8>"$store_lock"; flock -x -w 5 8 || { echo "gc skipped: the store is in use"; exit 0; }
find "$records" -type f -name '[0-9a-f]*' ! -name '*.tmp.*' -mmin +"$max_age_minutes" -delete
# Record names are hex digests (or HEX.tmp.PID), safe to read from ls, which orders them by age.
# shellcheck disable=SC2010
ls -t "$records" | grep -v '\.tmp\.' | tail -n +"$((keep_images + 1))" | while read -r i; do rm -f "$records/$i"; done
keep=$(mktemp keep.XXXXXX) || exit 1
cat "$records"/* 2>/dev/null | sort -u > "$keep"
removed_blobs=0; removed_sifs=0
for f in "$blobs"/*; do
  [ -e "$f" ] || continue
  grep -qx "${f##*/}" "$keep" || { rm -f "$f"; removed_blobs=$((removed_blobs+1)); }
done
for f in "$sifs"/*.sif; do
  [ -e "$f" ] || continue
  h=${f##*/}; h=${h%.sif}
  [ -e "$records/$h" ] || { rm -f "$f" "$f.sha256"; removed_sifs=$((removed_sifs+1)); }
done
find "$incoming" -type f -mmin +1440 -delete
find "$jobs" -mindepth 1 -maxdepth 1 -type d -mmin +"$max_age_minutes" -exec rm -rf {} +
rm -f "$keep"
echo "gc removed $removed_blobs blob(s) and $removed_sifs .sif file(s)"
