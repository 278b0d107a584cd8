#!/usr/bin/env bash
# The test command: sets up what it needs, then runs the whole suite on the CPU.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$here/scripts/setup.sh"
source "$here/scripts/env.sh"
cd "$here"
cargo test --release --locked "$@"
