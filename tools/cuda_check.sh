#!/usr/bin/env bash
# The CUDA path, checked on a lent GPU machine (the `device` tool's `run`) in one call: about
# 5 minutes of running on a H200, plus the machine's start. That machine has python3 with a
# CUDA torch but no project install and no ../shared/data: the package runs from src/, the
# data are carried. Here, first:
#   echo /.device/ >> .git/info/exclude; mkdir -p .device/data/omniglot .device/data/otb
#   cp ../shared/data/omniglot/{images_background,all_runs}.zip .device/data/omniglot/
#   cp -r ../shared/data/otb/{Couple,Crossing,Dog1,Football1,Jogging} .device/data/otb/
# then run(command="bash tools/cuda_check.sh", carry=[".device"], timeout_s=580).
# Writes $OUT/check.log and the benchmarks' JSON. Each step runs whatever the last one did.
set -u
export PYTHONPATH=$PWD/src:$PWD/benchmarks PYTHONUNBUFFERED=1
DATA=${DATA:-.device/data}
OUT=${OUT:-/tmp/cuda_check}
mkdir -p "$OUT" /tmp/cc
exec > >(tee "$OUT/check.log") 2>&1
step() { echo; echo "=== $1 ($(date +%T))"; }

step "machine"
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"

step "batch renormalisation: CUDA against the CPU, forward and backward"
python3 - <<'PY'
import copy, torch
from siamese.models.renorm import renormalise
from siamese.models.siamfc import siamfc_small
torch.manual_seed(0)
cpu = renormalise(siamfc_small(width=8)).train()
gpu = copy.deepcopy(cpu).cuda()
x = torch.rand(4, 3, 127, 127) * 3
a, b = cpu(x), gpu(x.cuda())
a.square().mean().backward(); b.square().mean().backward()
grads = [(p.grad - q.grad.cpu()).abs().max().item() / (p.grad.abs().max().item() + 1e-12)
         for p, q in zip(cpu.parameters(), gpu.parameters())]
print(f"max |out cpu - out cuda| {(a - b.cpu()).abs().max().item():.2e} of "
      f"{a.abs().max().item():.2e}; worst relative gradient difference {max(grads):.2e}")
PY

step "tracking: train on four sequences on CUDA (1 min), track the held-out Dog1"
timeout 200 python3 benchmarks/otb_tracking.py --budget-minutes 1 --seeds 1 --folds Dog1 \
    --no-peers --data-dir "$DATA" --runs /tmp/cc/otb --set train.device=cuda \
    --out "$OUT/otb_cuda.json"

step "Omniglot: configs/omniglot.toml on CUDA (AMP auto = bf16), 1.5 min, seed 0"
timeout 260 python3 benchmarks/omniglot_oneshot.py --budget-minutes 1.5 --seeds 1 \
    --data-dir "$DATA" --set train.device=cuda --out "$OUT/omniglot_cuda.json"

step "torchrun, one process on the GPU (NCCL, DDP, SyncBatchNorm), digits, 2 epochs"
timeout 120 python3 -m torch.distributed.run --standalone --nproc-per-node 1 -m siamese train \
    --device cuda --epochs 2 --quiet --out /tmp/cc/ddp && ls /tmp/cc/ddp

step "fp16 with the gradient scaler, compiled, digits, 2 epochs"
printf '[train]\ncompile = true\namp = "fp16"\n' > /tmp/cc/fp16.toml
timeout 150 python3 -m siamese train --config /tmp/cc/fp16.toml --device cuda --epochs 2 \
    --quiet --out /tmp/cc/fp16 && python3 -m siamese evaluate /tmp/cc/fp16 --out /tmp/cc/fp16e \
    | tail -5
step "done"
