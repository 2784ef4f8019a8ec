# Receive one blob on stdin (raw, gzip or zstd), appended to its partial file, checked against its
# digest and only then moved into the store. It first takes its locks, then says `ready N`: the
# sender starts at raw byte N (what an interrupted upload left), or `have` (another delivery sent
# it meanwhile). A lock per blob lets concurrent deliveries send a blob once; a shared store lock
# keeps garbage collection out. Ends with `ok`, or `short N` / `corrupt` and its exit code.
# Parameters: hex, size (bytes), codec (raw, gzip or zstd), rc_busy, rc_short, rc_corrupt (the
# exit codes), and the paths layout.ts names: store (the directory), store_lock, blob (where it
# goes), partial (where it arrives), blob_lock (held by its one sender).
cd -- "$store" || exit 1
exec 8>"$store_lock"; flock -s -w 600 8 || { echo "the store is locked (garbage collection?)" >&2; exit "$rc_busy"; }
exec 9>"$blob_lock"; flock -w 1800 9 || { echo "another delivery is still sending this blob" >&2; exit "$rc_busy"; }
[ -f "$blob" ] && { echo have; exit 0; }
have=$(stat -c %s "$partial" 2>/dev/null || echo 0)
[ "$have" -le "$size" ] || { rm -f "$partial"; have=0; }
echo "ready $have"
case $codec in
  raw) cat ;;
  gzip) gzip -dc ;;
  zstd) zstd -dcq ;;
esac >> "$partial"
have=$(stat -c %s "$partial")
[ "$have" -ge "$size" ] || { echo "short $have"; exit "$rc_short"; }
# Hashed once complete (read back from the page cache): hashing while receiving competes for the
# CPU that decrypting needs, and a resumed blob must be hashed whole anyway.
sum=$(sha256 < "$partial")
[ "$have" = "$size" ] && [ "$sum" = "$hex" ] || { rm -f "$partial"; echo corrupt; exit "$rc_corrupt"; }
mv -f "$partial" "$blob"
echo ok
