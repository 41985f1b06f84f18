#!/bin/sh
# meson install step: writes each installed program's --help output to
# DOCDIR/NAME.txt, so the installed texts are exactly what the programs say.
# Arguments: BINDIR SBINDIR DOCDIR, absolute, without DESTDIR (meson adds it).
set -eu
bindir=$1 sbindir=$2 docdir=$3
# DESTDIR as meson applies it: the prefix with DESTDIR in front, minus the prefix
root=${MESON_INSTALL_DESTDIR_PREFIX%"$MESON_INSTALL_PREFIX"}
mkdir -p "$root$docdir"
for prog in "$bindir/sluicectl" "$sbindir/sluice-netsetup" "$sbindir/sluice-proxy"; do
    name=${prog##*/}
    "$root$prog" --help > "$root$docdir/$name.txt"
    echo "Installing $name --help to $root$docdir/$name.txt"
done
