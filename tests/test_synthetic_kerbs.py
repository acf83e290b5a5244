"""Raised sidewalks (``kerb_height``, default ``KERB_HEIGHT``): ray casting against kerbs, objects on
them, and the upward-beam label rule; ``kerb_height=0`` gives one ground plane.

The fast ground intersection (summed-area culling, then an exact traversal of the raster row by
row) is checked against a slow reference written here: a fine fixed-step march along each ray
that tests the raster at every step.
"""
import numpy as np
import pytest

from occ.data.synthetic.frame import annotations
from occ.data.synthetic.primitives import Primitives
from occ.data.synthetic.raycast import GROUND, cast
from occ.data.synthetic.town import G_SIDEWALK, MAP_RES
from occ.data.synthetic.world import KERB_HEIGHT, build_world

KERB = KERB_HEIGHT


@pytest.fixture(scope='module')
def worlds():
    return build_world(0, 0, 6, kerb_height=0.0), build_world(0, 0, 6)


def _ground(origin, dirs, max_range, town):
    """The ground hits alone (no primitives): t, hit id, normal."""
    r = cast(Primitives.empty(), origin, dirs, np.arange(len(dirs))[None], max_range, ground=town)
    return r['t'], r['hit'], r['normal']


def _reference_hit(town, origin, d, step=0.002):
    """First t at which the ray is inside the raised ground (sidewalk cell below the kerb height)
    or at z = 0, by a fixed-step march."""
    if d[2] >= 0:
        return np.inf
    t_end = -origin[2] / d[2]
    t_top = (KERB - origin[2]) / d[2]
    p = origin + t_top * d
    if town.ground_codes(np.array([p[0]]), np.array([p[1]]))[0] == G_SIDEWALK:
        return t_top
    ts = np.arange(t_top, t_end, step / max(np.hypot(d[0], d[1]), 1e-9))
    q = origin + ts[:, None] * d
    inside = town.ground_codes(q[:, 0], q[:, 1]) == G_SIDEWALK
    return ts[np.argmax(inside)] if inside.any() else t_end


def test_kerb_hits_match_a_fine_march(worlds):
    _, world = worlds
    town = world.town
    rng = np.random.default_rng(0)
    # rays from a camera height above points next to sidewalks, at grazing and steep angles
    sw = np.argwhere(town.ground == G_SIDEWALK)
    pick = sw[rng.choice(len(sw), 300)] * MAP_RES
    origin_xy = pick + rng.uniform(-6, 6, pick.shape)
    ref_t, fast_t, fast_n = [], [], []
    for (ox, oy) in origin_xy:
        origin = np.array([ox, oy, 2.3])
        az = rng.uniform(-np.pi, np.pi, 8)
        el = -rng.uniform(0.03, 0.6, 8)
        dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], 1)
        t, hit, n = _ground(origin, dirs, 400.0, town)
        assert np.all(hit == GROUND)
        for k in range(len(dirs)):
            ref_t.append(_reference_hit(town, origin, dirs[k]))
        fast_t.append(t)
        fast_n.append(n)
    ref_t, fast_t, fast_n = np.array(ref_t), np.concatenate(fast_t), np.concatenate(fast_n)
    # the traversal is exact: every ray agrees to the reference's 2 mm steps (along the ray)
    assert np.all(np.abs(fast_t - ref_t) < 0.005), np.abs(fast_t - ref_t).max()
    faces = np.abs(fast_n[:, 2]) < 0.5
    assert faces.sum() > 20 and (~faces).sum() > 1000     # both kerb faces and tops / road were hit
    assert np.allclose(np.linalg.norm(fast_n, axis=1), 1.0)


def test_without_kerbs_the_ground_is_the_plane(worlds):
    flat, _ = worlds
    origin = np.array([150.0, 150.0, 2.3])
    dirs = np.array([[0.6, 0.0, -0.8], [0.0, 0.28, -0.96], [0.0, 0.0, 1.0]])
    t, hit, n = _ground(origin, dirs, 400.0, flat.town)
    assert np.allclose(t[:2], [2.3 / 0.8, 2.3 / 0.96]) and hit[2] != GROUND
    assert np.all(n[:, 2] == 1.0)


def test_kerbs_change_no_random_draw(worlds):
    flat, raised = worlds
    assert np.array_equal(flat.pose, raised.pose)
    assert np.array_equal(flat.town.ground, raised.town.ground)
    a, b = flat.town.scenery, raised.town.scenery
    assert len(a) == len(b) and np.array_equal(a.center[:, :2], b.center[:, :2])
    dz = b.center[:, 2] - a.center[:, 2]
    on_sidewalk = raised.town.raised(a.center[:, 0], a.center[:, 1])
    assert set(np.round(np.unique(dz), 6)) <= {0.0, KERB}
    assert np.isclose(dz[on_sidewalk], KERB).mean() > 0.9   # street furniture stands on the kerb
    assert np.allclose(dz[~on_sidewalk], 0)


def test_objects_and_boxes_stand_on_the_raised_sidewalk(worlds):
    _, world = worlds
    boxes = annotations(world, 3, 0)
    x = np.array([b['translation'][0] for b in boxes])
    y = np.array([b['translation'][1] for b in boxes])
    bottom = np.array([b['translation'][2] - b['size'][2] / 2 for b in boxes])
    up = world.town.raised(x, y)
    assert up.any() and (~up).any()
    assert np.allclose(bottom[up], KERB) and np.allclose(bottom[~up], 0.0)
    prims = world.prims_at(3)
    for n in np.nonzero(up)[0][:5]:
        part = prims.inst == boxes[n]['object']
        lowest = (prims.center[part, 2] - prims.size[part, 2] / 2).min()
        assert lowest >= KERB - 1e-6


def test_upward_endpoint_only_marks_no_free_voxel_above_the_lidar():
    from occ.data.synthetic.frame import make_labels
    from occ.data.synthetic.generate import DEFAULT_IMAGE_SIZE
    from occ.data.synthetic.sensors import lidar2ego
    from occ.geometry import OccGrid
    grid = OccGrid.from_voxel(0.4)
    plain = make_labels(build_world(0, 1, 8, upward_endpoint_only=False), 4, 0, grid, DEFAULT_IMAGE_SIZE)
    rule = make_labels(build_world(0, 1, 8), 4, 0, grid, DEFAULT_IMAGE_SIZE)
    assert np.array_equal(plain['semantics'], rule['semantics'])
    free = rule['semantics'] == 17
    lidar_level = int(np.floor((lidar2ego()[2, 3] - grid.lower[2]) / grid.voxel_size))
    ml, mp = rule['mask_lidar'].astype(bool), plain['mask_lidar'].astype(bool)
    assert not (ml & free)[:, :, lidar_level + 1:].any()          # only upward beams reach up there
    assert (mp & free)[:, :, lidar_level + 1:].sum() > 1000         # and without the rule they mark plenty
    assert np.all(ml <= mp) and np.all(rule['mask_camera'] <= plain['mask_camera'])
    assert np.array_equal(ml & ~free, mp & ~free)                  # every occupied voxel stays observed


def test_raised_cell_tables_match_loops():
    from occ.data.synthetic.town import RaisedCells
    rng = np.random.default_rng(1)
    raised = rng.random((23, 23)) < 0.15
    cells = RaisedCells(raised)
    for _ in range(200):
        i0, j0 = rng.integers(-3, 26, 2)
        i1, j1 = i0 + rng.integers(0, 8), j0 + rng.integers(0, 8)
        want = raised[max(i0, 0):max(min(i1 + 1, 23), 0), max(j0, 0):max(min(j1 + 1, 23), 0)].sum()
        assert cells.count(np.array([i0]), np.array([i1]), np.array([j0]), np.array([j1]))[0] == want
    for axis in (0, 1):
        for sign in (1, -1):
            table = cells.next_along(axis, sign)
            for i in range(23):
                for j in range(23):
                    line = raised[:, j] if axis == 0 else raised[i, :]
                    at = i if axis == 0 else j
                    ks = [k for k in range(23) if line[k] and (k - at) * sign >= 0]
                    want = (min(ks) if sign > 0 else max(ks)) if ks else (23 if sign > 0 else -1)
                    assert table[i, j] == want


def test_keyframe_scan_reuses_the_observation_cast(worlds):
    from occ.data.synthetic.frame import frame_rng, keyframe_lidar
    from occ.data.synthetic.sensors import lidar2ego, lidar_scan
    _, world = worlds
    f = 2
    shared = keyframe_lidar(world, f, 0)
    fresh = lidar_scan(world.prims_at(f, exclude=[world.agents[0]]), world.town,
                       world.ego2global(f, 0) @ lidar2ego(), frame_rng(world, f, 0, 10))
    for k in ('points', 'instance', 'semantics'):
        assert np.array_equal(shared[k], fresh[k])


def test_kerbs_and_primitives_compose_to_the_nearest_hit(worlds):
    """The kerb walk runs after the primitives (rays stopped above the kerb height skip it); the
    result must be the nearer of the ground-only and the primitives-only hits, ray by ray."""
    from occ.data.synthetic.sensors import LIDAR_RANGE, _lidar_tiles, lidar2ego, lidar_rays
    _, world = worlds
    prims = world.prims_at(3, exclude=[world.agents[0]])
    l2g = world.ego2global(3) @ lidar2ego()
    origin, dirs = l2g[:3, 3], lidar_rays(2)[0] @ l2g[:3, :3].T
    both = cast(prims, origin, dirs, _lidar_tiles(2), LIDAR_RANGE, ground=world.town)
    solids = cast(prims, origin, dirs, _lidar_tiles(2), LIDAR_RANGE, ground=False)
    t_ground, _, _ = _ground(origin, dirs, LIDAR_RANGE, world.town)
    want = np.minimum(t_ground, solids['t'])
    assert np.array_equal(both['t'], want)
    ground_first = np.isfinite(t_ground) & (t_ground < solids['t'])
    assert np.all(both['hit'][ground_first] == GROUND)
    assert np.all(both['hit'][~ground_first] == solids['hit'][~ground_first])
    with np.errstate(divide='ignore'):
        plane = np.where(dirs[:, 2] < 0, -origin[2] / dirs[:, 2], np.inf)
    assert (ground_first & (both['t'] < plane - 1e-6)).sum() > 100          # rays on raised sidewalks
    assert (~ground_first & np.isfinite(solids['t'])).sum() > 1000          # and rays stopped by solids
