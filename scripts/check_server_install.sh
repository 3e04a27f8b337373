#!/usr/bin/env bash
# The server-only install (docs/study-server.md): a fresh venv with the base package, no extras,
# must run serve, admin, export, backup and prolific without torch, timm or torchvision.
# Usage: scripts/check_server_install.sh PYTHON_WITH_THE_GENERATOR (it builds the test bundle).
set -euo pipefail
cd "$(dirname "$0")/.."
generator_python=${1:?the Python of a full install, to build the test bundle}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q .
server="$work/venv/bin/maco-study"
"$work/venv/bin/python" - <<'PY'
import importlib.util, sys
present = [m for m in ("torch", "torchvision", "timm", "numpy", "pandas") if importlib.util.find_spec(m)]
sys.exit(f"the server install has {', '.join(present)}" if present else 0)
PY

"$generator_python" -c "import sys; from stimuli.testing import build_test_bundle; build_test_bundle(sys.argv[1])" \
    "$work/bundle"
db="sqlite:///$work/study.db"
(cd "$work" && "$server" serve --help >/dev/null && "$server" prolific --help >/dev/null)
(cd "$work" && "$server" serve --bundle bundle --db "$db" --import-only)
(cd "$work" && echo "a-long-admin-password" | "$server" admin set-password --db "$db" --password-stdin)
(cd "$work" && "$server" export --db "$db" --out out/responses.csv)
(cd "$work" && "$server" backup --db "$db" --out backup.db)
refusal=$(cd "$work" && PROLIFIC_TOKEN= "$server" prolific status --db "$db" --study-id x 2>&1 || true)
grep -q "set PROLIFIC_TOKEN" <<<"$refusal"
if (cd "$work" && "$server" stimuli check bundle 2>"$work/err"); then
    echo "stimuli check ran without the generator extra" >&2; exit 1
fi
grep -q "pip install 'maco-study\[generator\]'" "$work/err"
echo "server-only install: serve, admin, export, backup and prolific run without torch"
