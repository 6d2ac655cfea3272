#!/usr/bin/env bash
# One-command setup without /opt/ros: system tools, a venv with ROS 2 Kilted wheels + PyTorch +
# MuJoCo (pinned), and a colcon build of the workspace. Idempotent: a second run only re-checks.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
cd "$ROOT"
t0=$(date +%s)

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# --- 1. System tools the build and the renderer need --------------------------------------
# command or file to look for -> Debian package that provides it
declare -A NEED=(
  [cmake]=cmake
  [g++]=g++
  [make]=make
  [libOSMesa.so.8]=libosmesa6
  [libEGL.so.1]=libegl1
)
missing=()
for what in "${!NEED[@]}"; do
  if [[ "$what" == lib* ]]; then
    ldconfig -p 2>/dev/null | grep -q "$what" || missing+=("${NEED[$what]}")
  else
    command -v "$what" >/dev/null 2>&1 || missing+=("${NEED[$what]}")
  fi
done
command -v "$PYTHON" >/dev/null 2>&1 || { command -v python3 >/dev/null && PYTHON=python3; }
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null \
  || { echo "[setup] error: Python 3.11 is required (ROS 2 Kilted wheels are cp311); set PYTHON=..." >&2; exit 1; }
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3.11-venv)
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    say "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "[setup] error: missing system packages: ${missing[*]}" >&2
    echo "        install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

# --- 2. Virtual environment with pinned Python packages -----------------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
touch "$VENV/COLCON_IGNORE"   # never crawl the venv for packages
stamp="$VENV/.requirements.sha256"
want=$(cat requirements/*.txt | sha256sum | cut -d' ' -f1)
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  say "installing pinned Python packages (ROS 2 Kilted wheels, torch, mujoco, ...)"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    -r requirements/ros.txt -r requirements/python.txt 2>&1 | grep -v '^WARNING: Location' || true
  # torch's dependency resolution may lift setuptools past colcon-core's pin; put it back.
  "$VENV/bin/pip" install -q --disable-pip-version-check "setuptools==79.0.1" 2>&1 \
    | grep -v '^WARNING: Location' || true
  "$VENV/bin/python" -c 'import rclpy, torch, mujoco, mcap, pyarrow, pandas, av, rerun' \
    || { echo "[setup] error: the Python environment is incomplete (see pip output above)" >&2; exit 1; }
  echo "$want" > "$stamp"
else
  say "Python packages up to date"
fi

# --- 3. colcon build of the workspace -------------------------------------------------------
# shellcheck disable=SC1091
source "$VENV/bin/activate"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
say "colcon build"
colcon --log-level error build --symlink-install \
  --event-handlers console_direct- status- summary+ \
  --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VENV/bin/python"

# --- 4. `hybrid-vla` on the venv's PATH (sources the workspace first) ------------------------
cat > "$VENV/bin/hybrid-vla" <<SHIM
#!/usr/bin/env bash
source "$ROOT/scripts/env.sh"
exec python -m hybrid_vla_ros.cli "\$@"
SHIM
chmod +x "$VENV/bin/hybrid-vla"

say "done in $(( $(date +%s) - t0 )) s. Use it with: source scripts/env.sh"
