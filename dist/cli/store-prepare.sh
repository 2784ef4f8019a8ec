# One round trip before the transfer: create the directories, hold the image (so garbage
# collection keeps what the job will use until Slurm no longer knows the job), record it, check its
# .sif, and report on stdout, one per line:
#   tool zstd              the cluster has zstd (blobs may come zstd-compressed)
#   path P                 the login shell's PATH (the receivers run without a login profile)
#   home|tmpdir|publish|root P  the directories, resolved
#   existing P             the existing .sif under test, resolved
#   sif ok|build           the image's .sif is intact and may be reused, or must be built
#   blob HEX have          the store has the blob (checked against its digest)
#   blob HEX bad           it failed its digest check and was removed
#   part KEY S E BYTES     a range (bytes S to E) of an interrupted upload, BYTES of it there
# Blobs are only checked when they will be used. Exit 3: the existing .sif is not there. Exit 4:
# remote-dir is refused (the home directory, or a folder the tool did not create), said on stderr.
# The image is held and checked under the shared store lock, so garbage collection (exclusive)
# cannot remove what this report says is there before the job has used it.
# Parameters: group ('' = private), remote_dir, tmpdir, publish_dir ('' = not publishing),
# publish_dir_mode and publish_group ('' = none): what a publish directory made here gets,
# existing_sif ('' = deliver an image), image_hex ('' = no image), blob_hexes (array), reuse (1/0:
# an intact .sif may be reused), sif_only (1/0: stop after the .sif check, the blobs are not known
# yet), and relative to remote_dir (layout.ts names them): marker (the tool's mark on remote-dir),
# remote_dirs (array: all its directories), sif_dir, sif (the image's .sif), image_record (its
# record), blobs and incoming (the store's blob and part-upload directories), store_lock, and
# hold (this run's hold: `image HEX` lines, and `job ID` once submitted).
if [ -n "$group" ]; then umask 027; else umask 077; fi
set -e
command -v zstd >/dev/null 2>&1 && echo "tool zstd"
echo "path $PATH"

# --- remote-dir is the tool's own: made here, with the marker in it; a folder without the marker
# (the home directory, a folder of the user's) is refused, since garbage collection and modes
# would touch what the user put there. Relative paths are relative to the home directory.
cd
home=$(pwd -P)
echo "home $home"
# shellcheck disable=SC2088 # a message: the path as the user wrote it, relative to ~
case $remote_dir in
  /*) shown=$remote_dir ;;
  *) shown="~/$remote_dir" ;;
esac
refuse() { printf '%s\n' "$*" >&2; exit 4; }
if [ ! -e "$remote_dir" ]; then
  mkdir -p -- "$(dirname -- "$remote_dir")"
  if mkdir -- "$remote_dir" 2>/dev/null; then
    echo "Made by riviera-singularity, which keeps to this folder (and removes only what it made here)." > "$remote_dir/$marker"
  fi
fi
cd -- "$remote_dir"
[ "$(pwd -P)" != "$home" ] || refuse "$shown is your home directory: riviera-singularity keeps a folder of its own; give one that does not exist yet (it is created), e.g. riviera-singularity"
[ -O . ] || refuse "$shown belongs to another user: give a folder of your own that does not exist yet (it is created)"
# Another delivery may have just made the folder: give it a moment to leave its marker.
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -f "$marker" ] && break; sleep 0.2; done
[ -f "$marker" ] && [ ! -L "$marker" ] || refuse "$shown exists and was not made by riviera-singularity (it has no $marker), so it is not used: its garbage collection would touch what you put there. Give a folder that does not exist yet (it is created); if an earlier riviera-singularity made this one, mark it: touch $shown/$marker"
root=$(pwd -P)
mkdir -p "${remote_dirs[@]}"
cd
mkdir -p -- "$tmpdir"
cd -- "$tmpdir"; echo "tmpdir $(pwd -P)"; cd
if [ -n "$publish_dir" ]; then
  # Only a publish directory made here gets our mode and group; an existing one (a lab's) is left as it is.
  if [ ! -e "$publish_dir" ] && mkdir -p -- "$(dirname -- "$publish_dir")" && mkdir -- "$publish_dir" 2>/dev/null; then
    chmod -- "$publish_dir_mode" "$publish_dir"
    if [ -n "$publish_group" ]; then
      chgrp -- "$publish_group" "$publish_dir" || { echo "cannot give $publish_dir to group $publish_group: are you in it?" >&2; exit 1; }
    fi
  fi
  cd -- "$publish_dir"; echo "publish $(pwd -P)"; cd
fi
cd -- "$root"; echo "root $root"
# Group sharing makes every directory setgid, so new files inherit the group.
if [ -n "$group" ]; then
  chgrp "$group" "${remote_dirs[@]}" || { echo "cannot give the store to group $group: are you in it?" >&2; exit 1; }
  # Only the files that lack g+r: a chmod moves a file's ctime, which would void the .sif's
  # verification record (below) on every delivery.
  chmod 2750 "${remote_dirs[@]}"; find "$sif_dir" -maxdepth 1 ! -type d ! -perm -g+r -exec chmod g+r {} + 2>/dev/null || true
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

# --- The image: held for the job, then its record, its .sif, its blobs

# The .sif is intact: its bytes have the digest beside it. Hashing a .sif of gigabytes takes
# seconds, so what was verified is remembered beside it (HEX.sif.verified: device, inode, size,
# mtime and ctime, and the digest); while all of that is unchanged the bytes are too (a rewrite
# moves the ctime, which no one can set back; a replacement brings a new inode), and they are not
# hashed again. It is remembered only if the .sif did not change while being hashed, and only once
# its ctime is two seconds old, so that a write within the file system's timestamp tick cannot
# hide behind a record.
sif_intact() {
  [ -s "$sif" ] && [ -s "$sif.sha256" ] || return 1
  local want seen now tmp
  want=$(cut -d' ' -f1 "$sif.sha256")
  seen=$(stat -L -c '%d:%i %s %y %z' -- "$sif") || return 1
  [ "$(cat -- "$sif.verified" 2>/dev/null)" = "$seen $want" ] && return 0
  [ "$(sha256 < "$sif")" = "$want" ] || return 1
  now=$(date +%s)
  if [ "$(stat -L -c '%d:%i %s %y %z' -- "$sif")" = "$seen" ] && [ $(( now - $(stat -L -c %Z -- "$sif") )) -ge 2 ]; then
    tmp=$(mktemp -- "$sif.verified.XXXXXX") && printf '%s\n' "$seen $want" > "$tmp" && mv -f -- "$tmp" "$sif.verified" || rm -f -- "$tmp"
  fi
  return 0
}

exec 8>>"$store_lock"
flock -s -w 600 8 || { echo "the store is locked (garbage collection?)" >&2; exit 75; }
printf 'image %s\n' "$image_hex" >> "$hold"
if [ "$sif_only" != 1 ]; then
  printf '%s\n' "${blob_hexes[@]}" > "$image_record.tmp.$$" && mv -f "$image_record.tmp.$$" "$image_record"
fi
set +e
if [ "$reuse" = 1 ] && sif_intact; then
  touch "$image_record" 2>/dev/null; echo "sif ok"; exit 0
fi
echo "sif build"
[ "$sif_only" = 1 ] && exit 0
for h in "${blob_hexes[@]}"; do
  f=$blobs/$h
  if [ -f "$f" ]; then
    if [ "$(sha256 < "$f")" = "$h" ]; then touch "$f"; echo "blob $h have"; else rm -f "$f"; echo "blob $h bad"; fi
  fi
done
# Parts named KEY.START-END.part (layout.ts).
for f in "$incoming"/*.part; do
  [ -e "$f" ] || continue
  n=${f##*/}; n=${n%.part}; r=${n#*.}
  echo "part ${n%%.*} ${r%-*} ${r#*-} $(stat -c %s "$f")"
done
