#!/bin/sh
# Put a udevadm that has the `verify` verb (systemd >= 254) into DIR, without touching the
# system: Debian 12 ships udev 252, whose udevadm has no `verify`. The udev and
# libsystemd-shared packages of bookworm-backports are downloaded with apt (from the mirror the
# system's own bookworm entry uses) into a private state directory, unpacked with dpkg-deb,
# and DIR/udevadm is a wrapper that runs them.
#
# Usage: packaging/fetch-udevadm.sh DIR      (exit 0 and a note when not possible here)
set -eu
dir=${1:?usage: fetch-udevadm.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)  # apt resolves relative Dir:: options against /, not the current folder

if [ -x "$dir/udevadm" ] && "$dir/udevadm" verify --help >/dev/null 2>&1; then
    exit 0
fi
if command -v udevadm >/dev/null 2>&1 && udevadm verify --help >/dev/null 2>&1; then
    echo "fetch-udevadm: the system's udevadm already has verify; nothing to fetch"
    exit 0
fi
codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
if [ "$codename" != bookworm ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "fetch-udevadm: not Debian 12 (bookworm); udev rules are checked by the static lint only"
    exit 0
fi

# The mirror of the system's "bookworm" suite; backports lives beside it.
mirror=$(apt-get indextargets --no-release-info --format '$(RELEASE) $(REPO_URI)' 2>/dev/null \
    | awk '$1 == "bookworm" { print $2; exit }')
if [ -z "$mirror" ]; then
    echo "fetch-udevadm: no bookworm entry in the apt sources; udev rules are checked by the static lint only"
    exit 0
fi

work="$dir/apt"
rm -rf "$work" "$dir/root"
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$dir/root"
echo "deb $mirror bookworm-backports main" > "$work/sources.list"
apt_private() {
    apt-get -q -o Dir::Etc::SourceList="$work/sources.list" -o Dir::Etc::SourceParts=/dev/null \
        -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache" \
        -o APT::Sandbox::User=root "$@"
}
apt_private update >/dev/null
(cd "$work" && apt_private download udev/bookworm-backports libsystemd-shared/bookworm-backports >/dev/null)
for deb in "$work"/*.deb; do
    dpkg-deb -x "$deb" "$dir/root"
done
root=$(cd "$dir/root" && pwd)
libdir=$(dirname "$(find "$root" -name 'libsystemd-shared-*.so' | head -n 1)")
cat > "$dir/udevadm" <<WRAPPER
#!/bin/sh
# udevadm from bookworm-backports, unpacked by packaging/fetch-udevadm.sh (for \`verify\` only).
LD_LIBRARY_PATH="$libdir" exec "$root/bin/udevadm" "\$@"
WRAPPER
chmod 0755 "$dir/udevadm"
rm -rf "$work"
echo "fetch-udevadm: $("$dir/udevadm" --version | head -n 1) in $dir/udevadm"
