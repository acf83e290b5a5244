"""Environment report: interpreter, torch and CUDA, the GPU, the packages occ imports and where from.

On the GPU machine the wrapper ``tools/device_check.sh`` installs the carried
wheels into a private folder and names it in ``OCC_DEVICE_SITE``; a package
imported from there is reported as ``carried``, anything else as ``installed``.
What ``tools/device_requirements.txt`` marks ``# not carried:`` is listed with
its reason, next to what actually failed to import.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import os.path as osp
import platform
import shutil
import subprocess
import sys

from occ.analysis.device_check.runner import REPO

REQUIREMENTS = osp.join(REPO, 'tools', 'device_requirements.txt')

# (import name, distribution name, needed for)
PACKAGES = (
    ('torch', 'torch', 'everything'),
    ('torchvision', 'torchvision', 'ResNet backbones'),
    ('numpy', 'numpy', 'everything'),
    ('mmengine', 'mmengine', 'configs, registries, Runner'),
    ('addict', 'addict', 'mmengine'),
    ('yapf', 'yapf', 'mmengine Config'),
    ('termcolor', 'termcolor', 'mmengine'),
    ('nuscenes', 'nuscenes-devkit', 'info files (tools/create_data.py)'),
    ('cachetools', 'cachetools', 'nuscenes-devkit'),
    ('pyquaternion', 'pyquaternion', 'synthetic world, nuscenes-devkit'),
    ('cv2', None, 'images'),
    ('PIL', 'pillow', 'images'),
    ('matplotlib', 'matplotlib', 'nuscenes-devkit, pictures'),
    ('sklearn', 'scikit-learn', 'nuscenes-devkit'),
    ('scipy', 'scipy', 'synthetic world'),
    ('tqdm', 'tqdm', 'progress bars'),
    ('tensorboard', 'tensorboard', 'TensorBoard logging'),
)
REQUIRED = ('torch', 'torchvision', 'numpy', 'mmengine', 'nuscenes', 'pyquaternion', 'cv2')


def _origin(path: str | None) -> str:
    site = os.environ.get('OCC_DEVICE_SITE')
    if path and site and osp.abspath(path).startswith(osp.abspath(site) + os.sep):
        return 'carried'
    return 'installed'


def package_report(name: str, dist: str | None) -> dict:
    """Import ``name``; its version, file and origin, or the import error."""
    try:
        mod = importlib.import_module(name)
    except Exception as e:   # noqa: BLE001  (any import failure is the answer)
        return {'ok': False, 'error': f'{type(e).__name__}: {e}'}
    version = getattr(mod, '__version__', None)
    if version is None and dist:
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            version = None
    path = getattr(mod, '__file__', None)
    return {'ok': True, 'version': str(version) if version is not None else None, 'path': path,
            'origin': _origin(path)}


def spconv_report(timeout: float = 120.0) -> dict:
    """Import spconv in a separate process (a broken compiled extension can crash the interpreter)."""
    code = ('import spconv, spconv.pytorch, torch; '
            'print(getattr(spconv, "__version__", "?"), spconv.__file__)')
    try:
        r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {'ok': False, 'error': f'import spconv.pytorch did not finish in {timeout:.0f} s'}
    if r.returncode != 0:
        err = (r.stderr.strip().splitlines() or [f'exit code {r.returncode}'])[-1]
        return {'ok': False, 'error': err}
    version, path = (r.stdout.strip().split(' ', 1) + [None])[:2]
    return {'ok': True, 'version': version, 'path': path, 'origin': _origin(path)}


def not_carried(path: str = REQUIREMENTS) -> list:
    """``# not carried: NAME | reason`` lines of the device requirements file."""
    out = []
    if not osp.isfile(path):
        return out
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.lower().startswith('# not carried:'):
                body = line.split(':', 1)[1]
                what, _, why = body.partition('|')
                out.append({'package': what.strip(), 'reason': why.strip()})
    return out


def wheels_report(folder: str | None) -> dict | None:
    if not folder:
        return None
    if not osp.isdir(folder):
        return {'folder': folder, 'error': 'folder not found (run `make device-wheels` and carry it)'}
    files = sorted(f for f in os.listdir(folder) if f.endswith('.whl'))
    sizes = {f: os.path.getsize(osp.join(folder, f)) for f in files}
    return {'folder': folder, 'wheels': {f: round(s / 2 ** 20, 3) for f, s in sizes.items()},
            'total_mib': round(sum(sizes.values()) / 2 ** 20, 2)}


def torch_report() -> dict:
    import torch
    r = {'version': torch.__version__, 'cuda_build': torch.version.cuda,
         'cuda_available': torch.cuda.is_available(), 'num_threads': torch.get_num_threads(),
         'float32_matmul_precision': torch.get_float32_matmul_precision(),
         'cudnn_allow_tf32': torch.backends.cudnn.allow_tf32,
         'matmul_allow_tf32': torch.backends.cuda.matmul.allow_tf32}
    if torch.backends.cudnn.is_available():
        r['cudnn'] = torch.backends.cudnn.version()
    if r['cuda_available']:
        r['devices'] = []
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            r['devices'].append({'name': p.name, 'capability': f'{p.major}.{p.minor}',
                                 'memory_gib': round(p.total_memory / 2 ** 30, 1),
                                 'multiprocessors': p.multi_processor_count})
        try:
            v = torch.cuda.nccl.version()
            r['nccl'] = '.'.join(map(str, v)) if isinstance(v, (tuple, list)) else str(v)
        except Exception as e:   # noqa: BLE001
            r['nccl'] = f'unavailable: {e}'
        r['bf16_supported'] = torch.cuda.is_bf16_supported()
    r['distributed_nccl'] = torch.distributed.is_available() and torch.distributed.is_nccl_available()
    return r


def nvidia_smi() -> str | None:
    exe = shutil.which('nvidia-smi')
    if not exe:
        return None
    try:
        r = subprocess.run([exe, '--query-gpu=name,driver_version,memory.total,clocks.max.sm',
                            '--format=csv,noheader'], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f'failed: {e}'
    return r.stdout.strip() or r.stderr.strip()


def _meminfo_gib() -> float | None:
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemTotal:'):
                    return round(int(line.split()[1]) / 2 ** 20, 1)
    except OSError:
        return None
    return None


def section(ctx) -> dict:
    packages = {name: dict(package_report(name, dist), needed_for=why) for name, dist, why in PACKAGES}
    packages['spconv'] = dict(spconv_report(min(120.0, max(10.0, ctx.remaining() - 20))),
                              needed_for='SparseOccHead')
    occ_imports = {}
    for mod in ('occ.ops', 'occ.models', 'occ.data', 'occ.evaluation', 'occ.engine'):
        try:
            importlib.import_module(mod)
            occ_imports[mod] = 'ok'
        except Exception as e:   # noqa: BLE001
            occ_imports[mod] = f'{type(e).__name__}: {e}'
    tr = torch_report()
    result = {
        'python': {'version': platform.python_version(), 'executable': sys.executable,
                   'platform': platform.platform()},
        'machine': {'cpus': os.cpu_count(), 'memory_gib': _meminfo_gib(), 'nvidia_smi': nvidia_smi()},
        'torch': tr,
        'device_used': ctx.device,
        'packages': packages,
        'occ_imports': occ_imports,
        'carried_site': os.environ.get('OCC_DEVICE_SITE'),
        'carried_wheels': wheels_report(ctx.opts.wheels),
        'not_carried': not_carried(),
        'not_importable': sorted(n for n, p in packages.items() if not p['ok']),
    }
    checks = {'required_packages_import': all(packages[n]['ok'] for n in REQUIRED),
              'occ_imports': all(v == 'ok' for v in occ_imports.values())}
    if ctx.opts.device == 'cuda':
        checks['cuda_available'] = bool(tr['cuda_available'])
    result['checks'] = checks
    for name, p in packages.items():
        state = f"{p.get('version')} ({p.get('origin')})" if p['ok'] else f"MISSING: {p['error']}"
        ctx.log(f'{name:<12} {state}')
    return result
