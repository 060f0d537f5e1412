#!/bin/sh
# make deb: build the two Debian packages of this tree into build/deb/:
#   misbridge_<version>-<revision>_all.deb              units, udev rule, user, /etc, docs, commands
#   misbridge-<version>_<version>-<revision>_<arch>.deb the release: a private venv with every wheel
# The version is misbridge/__init__.py's __version__ (MISBRIDGE_VERSION overrides it in the
# build's copy only: the tests build a second release that way). Needs debhelper, dh-virtualenv,
# python3.11-venv (make deb-deps installs them) and, the first time, PyPI for the wheelhouse.
set -eu

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${MISBRIDGE_DEB_OUT:-$ROOT/build/deb}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
REVISION="${DEB_REVISION:-1}"
OWN_VERSION="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$ROOT/misbridge/__init__.py")"
VERSION="${MISBRIDGE_VERSION:-$OWN_VERSION}"
case "$VERSION" in
    *[!a-z0-9.+]*|"") echo "build-deb: version '$VERSION' must use only a-z 0-9 . + (it is part of a package name)" >&2; exit 2 ;;
esac
SRC="$OUT/src-$VERSION"
WHEELHOUSE="$OUT/wheelhouse"

echo "build-deb: misbridge $VERSION-$REVISION into $OUT"
mkdir -p "$OUT" "$WHEELHOUSE"

# 1. The wheels, checked against their hashes; kept between builds.
"$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --require-hashes \
    -d "$WHEELHOUSE" -r "$ROOT/packaging/requirements.lock" -r "$ROOT/packaging/build-requirements.lock"

# 2. A clean copy of what the build reads.
rm -rf "$SRC"
mkdir -p "$SRC"
(cd "$ROOT" && tar --exclude=__pycache__ --exclude='*.pyc' -cf - \
    pyproject.toml README.md misbridge simulators docs systemd udev packaging) | tar -C "$SRC" -xf -
if [ "$VERSION" != "$OWN_VERSION" ]; then
    sed -i "s/^__version__ = .*/__version__ = \"$VERSION\"/" "$SRC/misbridge/__init__.py"
fi
cp -r "$ROOT/packaging/debian" "$SRC/debian"
sed "s/@UPSTREAM@/$VERSION/g" "$ROOT/packaging/debian/control.in" > "$SRC/debian/control"
rm "$SRC/debian/control.in"
sed -i "s/@UPSTREAM@/$VERSION/g" "$SRC/debian/misbridge.postinst"
printf '%s\n' \
    "misbridge-$VERSION: dir-or-file-in-opt" \
    "misbridge-$VERSION: package-installs-python-pycache-dir" \
    > "$SRC/debian/misbridge-$VERSION.lintian-overrides"
cat "$ROOT/packaging/debian/release.lintian-overrides" >> "$SRC/debian/misbridge-$VERSION.lintian-overrides"
rm "$SRC/debian/release.lintian-overrides"

# 3. The changelog dpkg reads the version from (docs/changelog.md is the one people read).
EPOCH="$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)"
{
    echo "misbridge ($VERSION-$REVISION) bookworm; urgency=medium"
    echo
    echo "  * Release $VERSION: see /usr/share/doc/misbridge/docs/changelog.md."
    echo
    echo " -- misbridge developers <dev@misbridge.invalid>  $(date -u -R -d "@$EPOCH")"
} > "$SRC/debian/changelog"

# 4. Generated files the package installs: the units and the commented example configuration.
mkdir -p "$SRC/build-units"
cp "$ROOT/systemd/misbridge.service" "$ROOT/systemd/misbridge-reconcile.service" \
    "$ROOT/systemd/misbridge-reconcile.timer" "$SRC/build-units/"
"$PYTHON" -I "$ROOT/packaging/gen_config_example.py" > "$SRC/build-units/misbridge.toml.example"

# 5. Build (binary packages only, unsigned: the store's repository signs what it publishes).
(cd "$SRC" && SOURCE_DATE_EPOCH="$EPOCH" MISBRIDGE_WHEELHOUSE="$WHEELHOUSE" \
    dpkg-buildpackage -b -us -uc --no-sign > "$OUT/build-$VERSION.log" 2>&1) || {
    echo "build-deb: dpkg-buildpackage failed; the last lines of $OUT/build-$VERSION.log:" >&2
    tail -n 30 "$OUT/build-$VERSION.log" >&2
    exit 1
}
ls -1 "$OUT"/misbridge*_"$VERSION-$REVISION"_*.deb
