# Source me: activates the venv and the colcon workspace (the pip-only equivalent of
# `source /opt/ros/<distro>/setup.bash && source install/setup.bash`).
_hv_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "${VENV:-$_hv_root/.venv}/bin/activate"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
# shellcheck disable=SC1091
source "$_hv_root/install/setup.bash"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export MUJOCO_GL="${MUJOCO_GL:-egl}"
unset _hv_root
