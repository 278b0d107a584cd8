# Source me: points the build at the project venv's libtorch.
# Everything lives under ~/.cache/yolo-qat so repeated builds and CI runs stay fast.
export YOLO_QAT_HOME="${YOLO_QAT_HOME:-$HOME/.cache/yolo-qat}"
export VIRTUAL_ENV="$YOLO_QAT_HOME/venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
export LIBTORCH="$("$VIRTUAL_ENV/bin/python" -c 'import torch,os;print(os.path.dirname(torch.__file__))' 2>/dev/null)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$YOLO_QAT_HOME/target}"
