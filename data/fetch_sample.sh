#!/usr/bin/env bash
# Fetches a real English Wikipedia dump sample (206 pages of enwiki, 2016) from PyPI: it ships
# in the gensim==4.4.0 wheel as a test file. Never committed (data/samples/ is git-ignored).
#
#   data/fetch_sample.sh [DEST_DIR]      # default data/samples; prints the sample's path
#
# PYTHON (default python3) runs pip and the extraction. The file is checked against its
# SHA-256 and moved into place only when complete; an existing sample is left alone.
set -euo pipefail

DEST_DIR="${1:-data/samples}"
PYTHON="${PYTHON:-python3}"
TARGET="${DEST_DIR}/enwiki-sample.xml.bz2"
MEMBER="gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
SHA256="a53f4648dec40467ebdcbc7a1307eddb51fe6e28e9309f6ebde81ba0d04bea2d"

if [[ -s "${TARGET}" ]]; then
  echo "${TARGET}"
  exit 0
fi
mkdir -p "${DEST_DIR}"
WORK="$(mktemp -d)"
PARTIAL="${TARGET}.partial.$$"
trap 'rm -rf "${WORK}" "${PARTIAL}"' EXIT

# Every gensim wheel carries the same test data; when none matches this interpreter, take the
# CPython 3.11 manylinux one (the file is data, the platform does not matter).
if ! "${PYTHON}" -m pip download -q --no-deps --only-binary=:all: gensim==4.4.0 \
    -d "${WORK}" >&2; then
  "${PYTHON}" -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 gensim==4.4.0 -d "${WORK}" >&2
fi
WHEELS=("${WORK}"/gensim-4.4.0-*.whl)
if [[ ! -f "${WHEELS[0]}" ]]; then
  echo "fetch_sample.sh: pip did not download a gensim 4.4.0 wheel" >&2
  exit 1
fi

"${PYTHON}" - "${WHEELS[0]}" "${MEMBER}" "${PARTIAL}" "${SHA256}" <<'EOF'
import hashlib
import shutil
import sys
import zipfile

wheel, member, out, want = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive, archive.open(member) as src, open(out, "wb") as dst:
  shutil.copyfileobj(src, dst)
with open(out, "rb") as f:
  got = hashlib.sha256(f.read()).hexdigest()
if got != want:
  sys.exit(f"fetch_sample.sh: {member} has SHA-256 {got}, want {want}")
EOF
mv -f "${PARTIAL}" "${TARGET}"
echo "${TARGET}"
