#!/bin/sh
# Builds the root filesystem of the local test image as a tar stream on stdout:
# Debian's static busybox plus its applet links. There is no image registry on
# our machines, so test images are made here and loaded with `docker import`:
#   docker/test-image/build-rootfs.sh | docker import \
#     -c 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' -c 'CMD ["/bin/sh"]' - calico-test/busybox
set -eu
BUSYBOX=${BUSYBOX:-/bin/busybox}
[ -x "$BUSYBOX" ] || { echo "build-rootfs: $BUSYBOX not found; apt-get install busybox-static" >&2; exit 1; }
if ! file -L "$BUSYBOX" 2>/dev/null | grep -q 'statically linked'; then
  # file(1) may be absent; ldd says "not a dynamic executable" for static binaries.
  if ldd "$BUSYBOX" >/dev/null 2>&1; then
    echo "build-rootfs: $BUSYBOX is dynamically linked; install busybox-static" >&2; exit 1
  fi
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/bin" "$dir/etc" "$dir/tmp" "$dir/proc" "$dir/sys" "$dir/dev" "$dir/root"
cp "$BUSYBOX" "$dir/bin/busybox"
for applet in $("$dir/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$dir/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$dir/etc/passwd"
echo 'root:x:0:' > "$dir/etc/group"
chmod 1777 "$dir/tmp"
tar -C "$dir" --numeric-owner --owner=0 --group=0 -cf - .
