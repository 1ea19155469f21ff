#!/bin/sh
# Re-vendors the ML-KEM of @noble/post-quantum and the modules it imports
# from @noble/hashes and @noble/curves, at the pinned versions below, from
# the npm registry. It copies the files unchanged except that bare import
# specifiers ('@noble/hashes/...') become relative paths (the page has no
# build step), then rewrites SHA256SUMS. Run it from anywhere; needs npm.
set -eu
PQ=0.7.1
HASHES=2.4.0
CURVES=2.4.0

here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
# npm pack checks each tarball against the registry's integrity hash.
npm pack --silent "@noble/post-quantum@$PQ" "@noble/hashes@$HASHES" "@noble/curves@$CURVES" >/dev/null
for pkg in post-quantum hashes curves; do
	mkdir "$pkg"
	tar xzf noble-"$pkg"-*.tgz -C "$pkg" --strip-components=1
done

cd "$here"
rm -rf post-quantum hashes curves
mkdir -p post-quantum hashes curves/abstract
for f in LICENSE ml-kem.js _crystals.js utils.js; do cp "$tmp/post-quantum/$f" post-quantum/; done
for f in LICENSE sha3.js utils.js _u64.js; do cp "$tmp/hashes/$f" hashes/; done
for f in LICENSE utils.js abstract/fft.js abstract/modular.js; do cp "$tmp/curves/$f" "curves/$f"; done
# Only import statements (lines that start with "import "), not examples
# in comments.
for f in post-quantum/*.js curves/utils.js; do
	sed -i -E "/^import /s#'@noble/(hashes|curves)/#'../\1/#" "$f"
done
if grep -rn "^import .*'@noble/" --include='*.js' . ; then
	echo "vendor.sh: a bare import is left" >&2
	exit 1
fi
find post-quantum hashes curves -type f | LC_ALL=C sort | xargs sha256sum > SHA256SUMS
echo "vendored @noble/post-quantum@$PQ, @noble/hashes@$HASHES, @noble/curves@$CURVES"
