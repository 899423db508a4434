#!/bin/bash
# Makes a new module package from Templates/module: a small file system
# that mounts with bento-upgraded, upgrades live, and tests itself.
# Usage: Tools/new-module.sh NAME DIR [VERSION]
#   NAME     the file system's name: lowercase letters and digits (hellofs)
#   DIR      where the package goes: created, must not exist or be empty
#   VERSION  major.minor.patch, 0.1.0 by default
set -eu
usage() { echo "usage: $0 NAME DIR [VERSION]" >&2; exit 2; }
[ $# -ge 2 ] && [ $# -le 3 ] || usage
name=$1 dir=$2 version=${3:-0.1.0}
[[ $name =~ ^[a-z][a-z0-9]*$ ]] || { echo "$0: NAME must be lowercase letters and digits: $name" >&2; exit 2; }
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "$0: VERSION must be major.minor.patch: $version" >&2; exit 2; }
if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then echo "$0: $dir exists and is not empty" >&2; exit 1; fi

tree=$(cd "$(dirname "$0")/.." && pwd)
# The Swift name: NAME with a capital first letter (hellofs -> Hellofs).
module=$(tr '[:lower:]' '[:upper:]' <<<"${name:0:1}")${name:1}
mkdir -p "$dir"
cp -R "$tree/Templates/module/." "$dir/"
find "$dir" -type f -exec sed -i -e "s|@NAME@|$name|g" -e "s|@MODULE@|$module|g" -e "s|@BENTO@|$tree|g" \
    -e "s|@VERSION@|$version|g" -e "s|@BENTOKIT@|$tree/kmod/BentoKit|g" {} +
echo "made $dir: file system $name $version (module file lib${module}Module.so)"
echo "next: swift test --package-path $dir; then see $dir/README.md"
