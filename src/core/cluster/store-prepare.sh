# One round trip before the transfer: create the directories, record the image (so garbage
# collection keeps its blobs from now on), check its .sif, and report on stdout, one per line:
#   tool zstd              the cluster has zstd (blobs may come zstd-compressed)
#   tmpdir|publish|root P  the directories, resolved
#   existing P             the existing .sif under test, resolved
#   sif ok|build           the image's .sif is intact and may be reused, or must be built
#   blob HEX have          the store has the blob (checked against its digest)
#   blob HEX part BYTES    an interrupted upload to resume
#   blob HEX bad           it failed its digest check and was removed
# Blobs are only checked when they will be used. Exit 3: the existing .sif is not there.
# Parameters: group ('' = private), remote_dir, tmpdir, publish_dir ('' = not publishing),
# existing_sif ('' = deliver an image), image_hex ('' = no image), blob_hexes (array), reuse (1/0:
# an intact .sif may be reused), sif_only (1/0: stop after the .sif check, the blobs are not known
# yet), and relative to remote_dir (layout.ts names them): remote_dirs (array: all its
# directories), sif_dir, sif (the image's .sif), image_record (its record), blobs and incoming
# (the store's blob and partial-upload directories).
if [ -n "$group" ]; then umask 027; else umask 077; fi
set -e
command -v zstd >/dev/null 2>&1 && echo "tool zstd"

# --- Directories, resolved (relative paths are relative to the home directory)
mkdir -p -- "$remote_dir" "$tmpdir"
cd -- "$tmpdir"; echo "tmpdir $(pwd -P)"; cd
if [ -n "$publish_dir" ]; then
  mkdir -p -- "$publish_dir"; cd -- "$publish_dir"; echo "publish $(pwd -P)"; cd
fi
cd -- "$remote_dir"; echo "root $(pwd -P)"
mkdir -p "${remote_dirs[@]}"
# Group sharing makes every directory setgid, so new files inherit the group.
if [ -n "$group" ]; then
  chgrp "$group" "${remote_dirs[@]}" || { echo "cannot give the store to group $group: are you in it?" >&2; exit 1; }
  chmod 2750 "${remote_dirs[@]}"; chmod g+r "$sif_dir"/* 2>/dev/null || true
else
  chmod 700 .
fi

# --- An existing .sif under test (relative to the home directory, as the user gave it)
if [ -n "$existing_sif" ]; then
  # shellcheck disable=SC2088 # a message: the path as the user wrote it, relative to ~
  case $existing_sif in
    /*) shown=$existing_sif ;;
    *) shown="~/$existing_sif" ;;
  esac
  (cd; [ -s "$existing_sif" ] || { printf 'no .sif at %s on the cluster\n' "$shown" >&2; exit 3; }
  echo "existing $(readlink -f -- "$existing_sif")") || exit 3
fi
[ -n "$image_hex" ] || exit 0

# --- The image: its record, its .sif, its blobs
if [ "$sif_only" != 1 ]; then
  printf '%s\n' "${blob_hexes[@]}" > "$image_record.tmp.$$" && mv -f "$image_record.tmp.$$" "$image_record"
fi
set +e
if [ "$reuse" = 1 ] && [ -s "$sif" ] && [ -s "$sif.sha256" ] && [ "$(sha256 < "$sif")" = "$(cut -d' ' -f1 "$sif.sha256")" ]; then
  touch "$image_record" 2>/dev/null; echo "sif ok"; exit 0
fi
echo "sif build"
[ "$sif_only" = 1 ] && exit 0
for h in "${blob_hexes[@]}"; do
  f=$blobs/$h
  if [ -f "$f" ]; then
    if [ "$(sha256 < "$f")" = "$h" ]; then touch "$f"; echo "blob $h have"; else rm -f "$f"; echo "blob $h bad"; fi
  elif [ -f "$incoming/$h.partial" ]; then
    echo "blob $h part $(stat -c %s "$incoming/$h.partial")"
  fi
done
