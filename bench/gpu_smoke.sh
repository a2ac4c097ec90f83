#!/usr/bin/env bash
# Five minutes on a lent GPU: do practicum's GPU promises hold? (issue 28; the last section of
# GPU-AUDIT.md). From the repository root:
#
#     bash bench/gpu_smoke.sh            # exit 0: every step passed
#
# Each step prints its name, exit status, wall time and throughput (training steps per second of
# the runs it made, read back from the run store); the logs stay in $SMOKE_DIR/logs. Steps:
#   0  the GPU guards of the test suite (tests/test_gpu_ready.py), on this machine's torch
#   1  torch, CUDA and cuDNN versions, the GPU's name and capability, bf16 with and without
#      emulation, which fused optimizer kernels torch has for cuda
#   2  mnist-lenet --quick in bf16 with channels_last; its env.json must name the card
#   3  the quick form of every torch practical with train.device=cuda (+ an Adagrad LeNet: fused)
#   4  mnist-resnet18 --quick twice (--force): the two model.pt must be equal, tensor for tensor
#   5  the kill-and-resume tests of the fit loop, text, detection and lesson engines, on CUDA
#   6  --nproc 2 on one GPU: a working run (gloo, with a note) or a one-line refusal, no hang
#
# Environment: PYTHON (default .venv/bin/python; made with pip install -e '.[test]' when there is
# none and the python3 here has no CUDA torch), PRACTICUM_DATA_MIRROR (default ../shared/datasets
# or ./shared/datasets), SMOKE_DIR (default a fresh temporary folder), SMOKE_RUN_TIMEOUT (seconds
# per run, default 150), SMOKE_STEPS (default "0 1 2 3 4 5 6": rerun a part, e.g. SMOKE_STEPS="4 5").
set -u
cd "$(dirname "$0")/.." || exit 2

SMOKE_DIR=${SMOKE_DIR:-$(mktemp -d -t practicum-gpu-smoke.XXXXXX)}
LOGS=$SMOKE_DIR/logs
mkdir -p "$LOGS"
RUN_TIMEOUT=${SMOKE_RUN_TIMEOUT:-150}
STEPS=" ${SMOKE_STEPS:-0 1 2 3 4 5 6} "

if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then
        PYTHON=.venv/bin/python
    elif python3 -c 'import torch, practicum; assert torch.cuda.is_available()' 2>/dev/null; then
        PYTHON=python3
    else
        echo "no .venv: making one (pip install -e '.[test]')"
        python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' || { echo "cannot make .venv"; exit 2; }
        PYTHON=.venv/bin/python
    fi
fi
if [ -z "${PRACTICUM_DATA_MIRROR:-}" ]; then
    for m in ../shared/datasets shared/datasets; do
        [ -f "$m/MANIFEST.md" ] && PRACTICUM_DATA_MIRROR=$(cd "$m" && pwd) && break
    done
fi
[ -n "${PRACTICUM_DATA_MIRROR:-}" ] || { echo "no data mirror: set PRACTICUM_DATA_MIRROR to shared/datasets"; exit 2; }
export PRACTICUM_DATA_MIRROR PRACTICUM_OFFLINE=1 MPLBACKEND=Agg
export PRACTICUM_HOME=$SMOKE_DIR/runs PRACTICUM_DATA_CACHE=$SMOKE_DIR/cache

FAILED=()
RESULTS=$SMOKE_DIR/results.txt
: > "$RESULTS"

# step NAME CMD...: run it, log it, print its exit status, time and the throughput of its runs.
step() {
    local name=$1; shift
    case "$STEPS" in *" ${name%%-*} "*) ;; *) return 0 ;; esac
    local before after code t0 t1
    before=$(ls -d "$PRACTICUM_HOME"/*/*/ 2>/dev/null | sort)
    t0=$(date +%s.%N)
    "$@" > "$LOGS/$name.log" 2>&1
    code=$?
    t1=$(date +%s.%N)
    after=$(ls -d "$PRACTICUM_HOME"/*/*/ 2>/dev/null | sort)
    local new
    new=$(comm -13 <(echo "$before") <(echo "$after") | tr '\n' ' ')
    local rate
    rate=$("$PYTHON" - "$new" <<'EOF'
import json, sys
from pathlib import Path
rates = []
for d in sys.argv[1].split():
    s = Path(d) / "summary.json"
    if not s.exists():
        continue
    m = json.loads(s.read_text())  # the summary: flat metrics
    steps, spe, epochs = m.get("train/steps"), m.get("train/seconds_per_epoch"), m.get("train/epochs")
    if steps and spe and epochs and spe == spe:
        rates.append(f"{steps / (spe * epochs):.0f} steps/s")
print(", ".join(rates) or "-")
EOF
)
    printf '%-34s exit %3d  %7.1fs  %s\n' "$name" "$code" "$(awk "BEGIN { print $t1 - $t0 }")" "$rate" | tee -a "$RESULTS"
    if [ "$code" -ne 0 ]; then
        FAILED+=("$name")
        tail -n 5 "$LOGS/$name.log" | sed 's/^/    | /'
    fi
    return 0
}

practicum() { timeout "$RUN_TIMEOUT" "$PYTHON" -m practicum "$@"; }

echo "practicum GPU smoke: $(git rev-parse --short HEAD 2>/dev/null) in $SMOKE_DIR"

# 0 -------------------------------------------------------------------------------------------
step 0-gpu-guards timeout 300 "$PYTHON" -m pytest tests/test_gpu_ready.py -q -p no:cacheprovider

# 1 -------------------------------------------------------------------------------------------
versions() {
    "$PYTHON" - <<'EOF'
import torch
from practicum.train.optim import fused_kernel
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
assert torch.cuda.is_available(), "torch sees no CUDA GPU"
for i in range(torch.cuda.device_count()):
    print(f"cuda:{i}", torch.cuda.get_device_name(i), "capability", torch.cuda.get_device_capability(i))
print("bf16 supported:", torch.cuda.is_bf16_supported(), "without emulation:",
      torch.cuda.is_bf16_supported(including_emulation=False))
print("fused kernels on cuda:", {op: fused_kernel("cuda", op) for op in ("sgd", "adam", "adamw", "adagrad")})
assert fused_kernel("cuda", "adagrad"), "no fused Adagrad on cuda: glove-ptb and the Adagrad trials would fail"
EOF
}
step 1-versions versions
[ -f "$LOGS/1-versions.log" ] && cat "$LOGS/1-versions.log"

# 2 -------------------------------------------------------------------------------------------
lenet_bf16() {
    practicum run mnist-lenet --quick --no-report -o train.device=cuda -o train.precision=bf16 \
        -o train.channels_last=true || return $?
    "$PYTHON" - <<'EOF'
import json, os
from pathlib import Path
(env,) = [json.loads(p.read_text()) for p in Path(os.environ["PRACTICUM_HOME"]).glob("mnist-lenet/*/env.json")]
c = env["compute"]
print(json.dumps(c, indent=1))
assert c["device"].startswith("cuda") and c["precision"] == "bf16" and c["gpu"] and c["tf32"] is False
assert c["deterministic"] is True and env["hardware"]["gpus"]
EOF
}
step 2-lenet-bf16-channels-last lenet_bf16
[ -f "$LOGS/2-lenet-bf16-channels-last.log" ] && tail -n 12 "$LOGS/2-lenet-bf16-channels-last.log"

# 3 -------------------------------------------------------------------------------------------
for entry in fmnist-softmax mnist-resnet18 mnist-vit fmnist-nin fmnist-densenet fmnist-googlenet \
             fmnist-lenet-bn-scratch finetune-full cifar10-kaggle voc-resnet18 fmnist-mlp-deep detect-fruit \
             lm-timemachine mt-fra-eng sentiment-imdb-tiny w2v-ptb glove-ptb dcgan-mnist gan-2d style-transfer \
             activations-halfmoon linreg-torch conv-scratch study-optimizers-2d study-gd-basics; do
    step "3-$entry" practicum run "$entry" --quick --no-report -o train.device=cuda
done
step 3-lenet-adagrad-fused practicum run mnist-lenet --quick --no-report -o train.device=cuda \
    -o optim.name=adagrad -o optim.lr=0.01

# 4 -------------------------------------------------------------------------------------------
twice_identical() {
    practicum run mnist-resnet18 --quick --no-report -o train.device=cuda --force || return $?
    practicum run mnist-resnet18 --quick --no-report -o train.device=cuda --force || return $?
    "$PYTHON" - <<'EOF'
import hashlib, os
from pathlib import Path
import torch
paths = sorted(Path(os.environ["PRACTICUM_HOME"]).glob("mnist-resnet18/*/model.pt"), key=os.path.getmtime)[-2:]
a, b = (torch.load(p, weights_only=True)["model"] for p in paths)
same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
print(*(hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in paths), "identical weights:", same)
assert same, "two runs of one config on one GPU differ: deterministic mode does not hold"
EOF
}
step 4-resnet18-twice-identical twice_identical
[ -f "$LOGS/4-resnet18-twice-identical.log" ] && tail -n 1 "$LOGS/4-resnet18-twice-identical.log"

# 5 -------------------------------------------------------------------------------------------
step 5-kill-and-resume-on-cuda timeout 420 "$PYTHON" -m pytest -q -p no:cacheprovider \
    tests/test_train_processes.py tests/test_text_seq_engine.py tests/test_detection_engine.py \
    tests/test_lessons_engine.py -k "killed or interrupted_run_resumes"

# 6 -------------------------------------------------------------------------------------------
two_ranks_one_gpu() {
    local out code
    out=$(CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0} practicum run mnist-lenet --quick --no-report \
          --nproc 2 -o train.device=cuda 2>&1)
    code=$?
    echo "$out"
    [ "$code" -eq 0 ] && return 0  # a working run
    [ "$code" -eq 2 ] && [ "$(echo "$out" | grep -c '^error:')" -eq 1 ] && ! echo "$out" | grep -q Traceback
}
step 6-nproc2-one-gpu two_ranks_one_gpu

echo
if [ ${#FAILED[@]} -ne 0 ]; then
    echo "FAILED (${#FAILED[@]}): ${FAILED[*]}  (logs: $LOGS)"
    exit 1
fi
echo "all passed (logs: $LOGS)"
