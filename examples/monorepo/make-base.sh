#!/bin/sh
# Makes the example's bases offline, as one OCI layout in base/layout:
#   base    busybox, from the machine's busybox-static
#   python  busybox plus Debian's minimal Python 3.11, from the .deb files in $PYTHON_DEBS
#           (get them with `apt-get download python3.11-minimal libpython3.11-minimal
#           libexpat1 zlib1g libc6`; without PYTHON_DEBS only `base` is made)
# Usage: [PYTHON_DEBS=DIR] ./make-base.sh [STACK]
set -eu
cd "$(dirname "$0")" && mkdir -p base && cd base
stack=${1:-stack}
busybox=$(command -v busybox)
rm -rf rootfs python && mkdir -p rootfs/bin rootfs/etc rootfs/tmp && chmod 1777 rootfs/tmp
cp "$busybox" rootfs/bin/busybox
for applet in $(rootfs/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -s busybox "rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' > rootfs/etc/passwd
printf 'root:x:0:\n' > rootfs/etc/group
cat > stack.kdl <<'KDL'
stack version=1
image base {
    from "scratch"
    copy "rootfs/" to="/"
    env PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}
KDL
if [ -n "${PYTHON_DEBS:-}" ]; then
  mkdir -p python
  for deb in "$PYTHON_DEBS"/*.deb; do dpkg-deb -x "$deb" python; done
  ln -sf python3.11 python/usr/bin/python3
  cat >> stack.kdl <<'KDL'
image python {
    from base
    copy "python/" to="/"
}
KDL
fi
"$stack" build --out layout
