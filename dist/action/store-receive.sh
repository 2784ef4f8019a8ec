# Receive one range of a blob on stdin (raw, gzip or zstd), appended to its part file, and join the
# blob once every range is there and its digest is known. It first takes its locks, then says
# `ready N`: the sender starts at byte N of the range (what an interrupted upload left), or `have`
# (the store has the blob). A complete range ends with `ok` (the blob was joined: its parts, in
# order, matched its digest and it is in the store) or `part` (other ranges are missing, or the
# digest is not known yet: a later receiver joins); else `short N` / `corrupt` and their exit code
# (corrupt: every part of the blob was removed, send it again).
# Parameters: key (the part files' name: the hex, or a stand-in), hex ('' = not known yet), size
# (the blob's), length (this range's), codec (raw, gzip or zstd), rc_busy, rc_short, rc_corrupt
# (the exit codes), login_path (the login shell's PATH: this runs without the login profile; '' =
# as it is), and the paths layout.ts names: store (the directory), store_lock, blobs,
# incoming, part (this range's file, incoming/KEY.START-END.part: the bounds are read back from
# such names), join_lock, joined_record (incoming/KEY.blob: the hex a stand-in KEY was joined into).
[ -z "$login_path" ] || export PATH=$login_path
cd -- "$store" || exit 1
exec 8>"$store_lock"; flock -s -w 600 8 || { echo "the store is locked (garbage collection?)" >&2; exit "$rc_busy"; }
exec 9>"$part.lock"; flock -w 1800 9 || { echo "another delivery is still sending this range" >&2; exit "$rc_busy"; }
# The blob is in the store: by its digest, or, under a stand-in (the digest not known here yet), by
# the record of the delivery that joined its parts.
stored() {
  if [ -n "$hex" ]; then [ -f "$blobs/$hex" ]; return; fi
  local into
  into=$(cat -- "$joined_record" 2>/dev/null) && [[ $into =~ ^[0-9a-f]{64}$ ]] && [ -f "$blobs/$into" ]
}
# Another delivery joined the blob: what is left of its parts is of no use.
joined_elsewhere() { rm -f -- "$incoming/$key".*-*.part; echo have; exit 0; }
# The part is looked at before the store, since a joiner writes its record before it removes the parts.
have=$(stat -c %s "$part" 2>/dev/null || echo 0)
stored && joined_elsewhere
[ "$have" -le "$length" ] || { rm -f "$part"; have=0; }
echo "ready $have"
case $codec in
  raw) cat ;;
  gzip) gzip -dc ;;
  zstd) zstd -dcq ;;
esac >> "$part"
have=$(stat -c %s "$part" 2>/dev/null || echo 0)
if [ "$have" -lt "$length" ]; then
  # Not short after all if a join elsewhere took this part (complete already) while the stream was empty.
  stored && joined_elsewhere
  echo "short $have"; exit "$rc_short"
fi
[ "$have" = "$length" ] || { rm -f "$part"; echo corrupt; exit "$rc_corrupt"; }
[ -n "$hex" ] || { echo part; exit 0; }

# --- Join, if the complete parts tile the blob
exec 7>"$join_lock"; flock -w 1800 7 || { echo "the blob is being joined elsewhere" >&2; exit "$rc_busy"; }
[ -f "$blobs/$hex" ] && { echo ok; exit 0; }
pos=0
tiles=()
while read -r f; do
  r=${f#"$key".}; r=${r%.part}; s=${r%-*}; e=${r#*-}
  [ "$s" = "$pos" ] && [ "$(stat -c %s "$incoming/$f")" = $((e - s)) ] || continue
  tiles+=("$incoming/$f"); pos=$e
done < <(cd -- "$incoming" && find . -maxdepth 1 -name "$key.*-*.part" -printf '%f\n' | sort -t. -k2,2n)
[ "$pos" = "$size" ] || { echo part; exit 0; }
# Hashed once complete (read back from the page cache): hashing while receiving competes for the
# CPU that decrypting needs, and a resumed range must be read whole anyway. One part is the blob;
# several are joined by cat, which copies inside the kernel (copy_file_range) where it can, and
# then hashed: less than half the CPU of hashing them on their way through a pipe and tee.
if [ "${#tiles[@]}" = 1 ]; then
  joined=${tiles[0]}
else
  joined=$(mktemp "$incoming/$key.join.XXXXXX") || exit 1
  cat -- "${tiles[@]}" > "$joined" || { rm -f -- "$joined"; echo "could not join the parts of $key" >&2; exit 1; }
fi
sum=$(sha256 < "$joined")
if [ "$sum" != "$hex" ] || [ "$(stat -c %s "$joined")" != "$size" ]; then
  rm -f -- "$joined" "$incoming/$key".*-*.part
  echo corrupt; exit "$rc_corrupt"
fi
mv -f -- "$joined" "$blobs/$hex" || exit 1
# Joined from a stand-in's parts: said before they go (see stored).
if [ "$key" != "$hex" ] && record=$(mktemp "$incoming/$key.blob.XXXXXX"); then
  { echo "$hex" > "$record" && mv -f -- "$record" "$joined_record"; } || rm -f -- "$record"
fi
rm -f -- "$incoming/$key".*-*.part
echo ok
