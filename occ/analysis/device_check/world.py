"""The synthetic world the device check trains and evaluates on, generated on the machine.

Full mode: 4 towns x 8 keyframes (3 train, 1 val), 0.4 m labels (200 x 200 x 16)
and 180 x 320 camera images (the dataset resizes them to each config's input),
about 1 CPU-s per keyframe. ``--tiny``: 2 towns x 2 keyframes at 72 x 128.
An existing root (``--world DIR``) is used as it is; its info files are
written when missing.
"""
from __future__ import annotations

import os
import os.path as osp
import time

FULL = dict(scenes=4, frames=8, image_size=(180, 320))
TINY = dict(scenes=2, frames=2, image_size=(72, 128))
VOXEL = 0.4


def _write_infos(root: str) -> dict:
    from occ.data.infos import build_infos, save_infos
    result, messages = build_infos(root, None, False, progress=False)
    paths = {}
    for split, data in result.items():
        path = osp.join(root, f'occ_infos_{split}.pkl')
        save_infos(data, path)
        paths[split] = (path, len(data['infos']))
    return {'paths': paths, 'messages': list(messages)}


def section(ctx) -> dict:
    spec = TINY if ctx.opts.tiny else FULL
    root = ctx.opts.world or osp.join(ctx.opts.work_dir, 'world')
    result = {'root': root}
    t0 = time.time()
    if ctx.opts.world:
        if not osp.isdir(root):
            raise FileNotFoundError(f'--world {root}: folder not found')
        result['generated'] = False
    else:
        from occ.data.synthetic import generate
        import shutil
        if osp.isdir(root):
            shutil.rmtree(root)         # a world of an earlier run may be of another size
        workers = max(1, min(os.cpu_count() or 1, spec['scenes'] * max(1, spec['frames'] // 8), 8))
        s = generate(root, scenes=spec['scenes'], frames=spec['frames'], seed=ctx.opts.seed, voxel=VOXEL,
                     image_size=spec['image_size'], workers=workers, progress=False)
        result.update(generated=True, spec=dict(spec, voxel=VOXEL, seed=ctx.opts.seed, workers=workers),
                      keyframes=s['keyframes'], generate_s=round(time.time() - t0, 1))
    t1 = time.time()
    train_info = osp.join(root, 'occ_infos_train.pkl')
    if ctx.opts.world and osp.isfile(train_info):
        infos = {'paths': {}, 'messages': ['info files present, reused']}
        for split in ('train', 'val'):
            p = osp.join(root, f'occ_infos_{split}.pkl')
            if osp.isfile(p):
                from occ.data.infos import InfoFile
                infos['paths'][split] = (p, len(InfoFile.read(p)))
    else:
        infos = _write_infos(root)
    result['infos_s'] = round(time.time() - t1, 1)
    counts = {split: n for split, (_, n) in infos['paths'].items()}
    result['samples'] = counts
    result['messages'] = infos['messages']
    if not counts.get('train'):
        raise ValueError(f'{root}: no training samples in the info files')
    # the val split may be empty in a one-town world: evaluate on train then
    val_split = 'val' if counts.get('val') else 'train'
    result['world'] = {'root': root, 'train_info': infos['paths']['train'][0],
                       'eval_info': infos['paths'][val_split][0], 'eval_split': val_split,
                       'voxel': VOXEL, 'tiny': ctx.opts.tiny}
    result['checks'] = {'has_train_samples': counts.get('train', 0) > 0}
    ctx.log(f'world at {root}: {counts} samples ({result.get("generate_s", 0)} s + infos {result["infos_s"]} s)')
    return result
