# Garbage collection, under the exclusive store lock (skipped, not waited for, when deliveries are
# sending): keep the newest image records, drop the blobs and .sif files no kept record names, old
# partial uploads and old job directories.
# Parameters: store (the store directory), keep_images, max_age_minutes.
cd -- "$store" || exit 0
exec 8>lock; flock -x -w 5 8 || { echo "gc skipped: the store is in use"; exit 0; }
find images -type f -name '[0-9a-f]*' ! -name '*.tmp.*' -mmin +"$max_age_minutes" -delete
# Record names are hex digests (or HEX.tmp.PID), safe to read from ls, which orders them by age.
# shellcheck disable=SC2010
ls -t images | grep -v '\.tmp\.' | tail -n +"$((keep_images + 1))" | while read -r i; do rm -f "images/$i"; done
keep=$(mktemp keep.XXXXXX) || exit 1
cat images/* 2>/dev/null | sort -u > "$keep"
blobs=0; sifs=0
for f in blobs/sha256/*; do
  [ -e "$f" ] || continue
  grep -qx "${f##*/}" "$keep" || { rm -f "$f"; blobs=$((blobs+1)); }
done
for f in ../sif/*.sif; do
  [ -e "$f" ] || continue
  h=${f##*/}; h=${h%.sif}
  [ -e "images/$h" ] || { rm -f "$f" "$f.sha256"; sifs=$((sifs+1)); }
done
find incoming -type f -mmin +1440 -delete
find ../jobs -mindepth 1 -maxdepth 1 -type d -mmin +"$max_age_minutes" -exec rm -rf {} +
rm -f "$keep"
echo "gc removed $blobs blob(s) and $sifs .sif file(s)"
