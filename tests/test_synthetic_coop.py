"""Connected vehicles (--agents K) share one world, and the world has every Occ3D class."""
import json
import os

import numpy as np

from occ.data.synthetic import build_world, generate
from occ.data.synthetic.town import GROUND_CODE_CLASS
from occ.data.synthetic.world import EGO_REAR_AXLE, EGO_SIZE


def test_cooperative_world(tmp_path):
    root = str(tmp_path)
    s = generate(root, scenes=1, frames=3, seed=11, agents=2, voxel=0.8, image_size=(48, 80), workers=1,
                 progress=False)
    assert s['scenes'] == ['scene-0001', 'scene-0002']          # official train names, one per vehicle
    from nuscenes.nuscenes import NuScenes
    nusc = NuScenes(version='v1.0-trainval', dataroot=root, verbose=False)
    coop = json.load(open(os.path.join(root, 'cooperative.json')))
    assert coop['agents'] == 2 and len(coop['samples']) == 6
    for tok, entry in coop['samples'].items():
        sample = nusc.get('sample', tok)
        scene = nusc.get('scene', sample['scene_token'])
        assert scene['name'] == entry['scene'] == s['scenes'][entry['agent_id']]
        assert nusc.get('log', scene['log_token'])['vehicle'] == f'synth-vehicle-{entry["agent_id"]}'
        (nb,) = entry['neighbors']
        other = nusc.get('sample', nb['token'])
        assert other['timestamp'] == sample['timestamp'] and nb['agent_id'] != entry['agent_id']
        pose = [nusc.get('ego_pose', nusc.get('sample_data', x['data']['LIDAR_TOP'])['ego_pose_token'])['translation']
                for x in (sample, other)]
        gap = np.linalg.norm(np.subtract(*pose))
        assert 3.0 < gap < 50.0                          # close enough to share the view, never colliding
        if entry['agent_id'] == 0:
            # the other connected vehicle is an annotated car where its ego pose says it is
            ego_pose = nusc.get('ego_pose', nusc.get('sample_data', other['data']['LIDAR_TOP'])['ego_pose_token'])
            yaw = 2 * np.arctan2(ego_pose['rotation'][3], ego_pose['rotation'][0])
            centre = np.array(ego_pose['translation'][:2]) + (EGO_SIZE[0] / 2 - EGO_REAR_AXLE) * \
                np.array([np.cos(yaw), np.sin(yaw)])
            cars = [nusc.get('sample_annotation', a) for a in sample['anns']]
            d = min(np.linalg.norm(np.subtract(a['translation'][:2], centre)) for a in cars
                    if a['category_name'] == 'vehicle.car')
            assert d < 1e-3
    splits = json.load(open(os.path.join(root, 'splits.json')))
    assert splits['train'] == s['scenes'] and splits['val'] == []
    assert coop['worlds'] == [s['scenes']]
    tok1 = next(t for t, e in coop['samples'].items() if e['agent_id'] == 1)
    assert os.path.isfile(os.path.join(root, 'gts', s['scenes'][1], tok1, 'labels.npz'))


def test_world_has_every_class_and_plausible_sizes():
    w = build_world(0, 0, 4)
    w1 = build_world(0, 1, 4)
    classes = set(GROUND_CODE_CLASS.tolist())
    for x in (w, w1):
        classes |= set(x.town.scenery.cls.tolist()) | set(x.parts.cls.tolist())
    assert classes >= set(range(17))      # trailers are rare (town 0 of seed 0 has none), so two towns
    sizes = {}
    for o in w.objects:
        sizes.setdefault(o.category, []).append(o.size)
    med = {k: np.median(np.array(v), 0) for k, v in sizes.items()}   # (l, w, h)
    assert 3.8 < med['vehicle.car'][0] < 5.0 and 1.6 < med['vehicle.car'][1] < 2.0
    assert 1.4 < med['human.pedestrian.adult'][2] < 2.0
    assert med['movable_object.trafficcone'][2] < 1.1 and med['movable_object.barrier'][0] > 1.5
    counts = {k: len(v) for k, v in sizes.items()}
    # realistic imbalance: many cars and pedestrians, a few buses and construction vehicles
    assert counts['vehicle.car'] > 5 * counts.get('vehicle.bus.rigid', 0) > 0
    assert counts['human.pedestrian.adult'] > 50 and counts['movable_object.barrier'] > 10
    # moving things move: pedestrians and traffic change position between keyframes
    moving = [n for n, m in enumerate(w.motion) if m in ('vehicle', 'pedestrian', 'agent')]
    step = np.linalg.norm(w.pose[1, moving, :2] - w.pose[0, moving, :2], axis=1)
    assert (step > 0.2).mean() > 0.5 and step.max() < 7.0


def test_bad_arguments_are_named(tmp_path):
    import pytest
    with pytest.raises(ValueError, match='voxel'):
        generate(str(tmp_path / 'x'), scenes=1, frames=1, voxel=0.5)
    with pytest.raises(ValueError, match='agents'):
        generate(str(tmp_path / 'x'), scenes=1, frames=1, agents=0)
    f = tmp_path / 'file'
    f.write_text('')
    with pytest.raises(ValueError, match=str(f)):
        generate(str(f), scenes=1, frames=1)
