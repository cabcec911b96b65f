#!/bin/sh
# Makes the example's base image offline, from the machine's busybox-static: an OCI layout in
# base/layout (image `base`). Usage: ./make-base.sh [STACK]
set -eu
cd "$(dirname "$0")" && mkdir -p base && cd base
stack=${1:-stack}
busybox=$(command -v busybox)
rm -rf rootfs && mkdir -p rootfs/bin rootfs/etc rootfs/tmp && chmod 1777 rootfs/tmp
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
"$stack" build --out layout
