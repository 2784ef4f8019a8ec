# Library, put after the parameters of the scripts that check digests.

# sha256 of stdin as bare hex: by openssl where the cluster has it (several times faster than
# coreutils' sha256sum on machines with SHA instructions), else by sha256sum.
sha256() {
  if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 | sed 's/^.*= *//'; else sha256sum | cut -d' ' -f1; fi
}
