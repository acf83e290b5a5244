"""One prepared check of every CUDA path of occ, with speed and memory, for a borrowed GPU machine.

``tools/device_check.py`` is the command line; ``tools/device_check.sh`` installs the
carried wheels on the GPU machine first (docs/PERFORMANCE.md, "GPU check"). The
check is a list of independent sections. Each one runs in its own Python
process under a time cap, so a crash (a segfault in a compiled extension, a
CUDA error that poisons the context) or a time-out is recorded in the JSON and
the next section still runs; a global budget bounds the whole run.

==================  =======================================================================
section             what it does
==================  =======================================================================
environment         python, torch, CUDA, GPU, which packages import (carried or preinstalled),
                    the carried wheels, and what could not be carried and why
world               a small synthetic nuScenes world with 0.4 m Occ3D labels, generated on the
                    machine, plus its info files
bev_pool            ``occ.ops.bev_pool`` values and gradients on CUDA against CPU
sparse_head         ``SparseOccHead`` logits and gradients on CUDA against CPU (skipped with
                    the reason when spconv cannot load)
ray_iou             RayIoU ray casting on CUDA against CPU
evaluator           ``OccEvaluator`` (voxel mIoU, RayIoU) with CUDA ray casts against CPU
inference           model-only FPS of both configs at batch 1, fp32 and fp16 autocast
train_flashocc      AMP bf16 / fp16 training of configs/flashocc_r50_nusc.py at batch 1 and 4:
                    loss curve, iteration time, peak memory
train_bevformer     the same for configs/bevformer_occ_r50_nusc.py
ddp                 ``torchrun --nproc_per_node 1 tools/train.py ... --launcher pytorch`` (NCCL)
==================  =======================================================================

``--device cpu --tiny`` runs every section on CPU with a tiny world and tiny
variants of the configs (``configs.TINY_OVERRIDES``): the CUDA comparisons are
recorded as skipped, the CPU halves still run (this is what the test suite does).

Modules: ``runner`` (sections, budget, processes, JSON), ``environment``,
``world``, ``parity`` (CUDA vs CPU), ``check_configs`` (configs and their tiny
variants), ``training``, ``inference``, ``ddp``.
"""
from occ.analysis.device_check.runner import SECTIONS, CheckOptions, run_device_check

__all__ = ['SECTIONS', 'CheckOptions', 'run_device_check']
