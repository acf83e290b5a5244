"""Geometry of the synthetic world (ray casting, voxelisation, visibility) against slow, independent
references written here."""
import numpy as np
import pytest

from occ.data.synthetic.labels import fill_vertical_gaps, ray_visibility, voxel_visibility, voxelize_points
from occ.data.synthetic.primitives import BOX, CYLINDER, Primitives, exit_distance, intersect
from occ.data.synthetic.raycast import GROUND, MISS, cast, cast_pinhole, grid_tiles
from occ.data.synthetic.sensors import camera_rig, pixel_rays
from occ.geometry import OccGrid


def _prims(rng, n, spread=10.0):
    kind = rng.integers(0, 3, n).astype(np.uint8)
    size = rng.uniform(0.3, 3.0, (n, 3))
    size[kind != BOX, 1] = np.where(kind[kind != BOX] == CYLINDER, size[kind != BOX, 0], size[kind != BOX, 1])
    center = np.c_[rng.uniform(-spread, spread, (n, 2)), size[:, 2] / 2 + rng.uniform(0, 1, n)]
    return Primitives(kind, center, size, rng.uniform(-np.pi, np.pi, n), rng.integers(0, 17, n).astype(np.uint8),
                      np.arange(n, dtype=np.int32), rng.random((n, 3)).astype(np.float32), np.zeros(n, np.uint8))


def _inside_ref(p, kind, center, size, yaw):
    """Point-in-solid for one primitive, written independently of the library."""
    c, s = np.cos(-yaw), np.sin(-yaw)
    q = p - center
    x, y, z = c * q[..., 0] - s * q[..., 1], s * q[..., 0] + c * q[..., 1], q[..., 2]
    a, b, h = size / 2
    if kind == BOX:
        return (np.abs(x) <= a) & (np.abs(y) <= b) & (np.abs(z) <= h)
    if kind == CYLINDER:
        return (x * x + y * y <= a * a) & (np.abs(z) <= h)
    return (x / a) ** 2 + (y / b) ** 2 + (z / h) ** 2 <= 1


def test_intersect_matches_marching_reference():
    rng = np.random.default_rng(0)
    prims = _prims(rng, 60, spread=3.0)
    origin = np.array([0.0, 0.0, 12.0])
    pid = np.repeat(np.arange(60), 8)
    target = prims.center[pid] + rng.normal(0, 0.8, (len(pid), 3))
    d = target - origin
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    t, normal, _ = intersect(prims, pid, origin, d)
    ts = np.arange(0, 25, 0.002)
    checked = 0
    for k in range(len(pid)):
        p = prims.subset([pid[k]])
        inside = _inside_ref(origin + ts[:, None] * d[k], p.kind[0], p.center[0], p.size[0], p.yaw[0])
        if not inside.any():
            assert not np.isfinite(t[k]) or t[k] == pytest.approx(ts[-1], abs=0.01) or \
                _grazing(origin, d[k], t[k], p)
            continue
        ref = ts[np.argmax(inside)]
        assert t[k] == pytest.approx(ref, abs=0.004), (k, p.kind[0])
        assert np.dot(normal[k], d[k]) <= 1e-6          # normals face the incoming ray
        checked += 1
    assert checked > 200


def _grazing(origin, d, t, p):
    """A hit the 2 mm marching missed must be a grazing one: the solid is within 2 mm of the ray."""
    q = origin + t * d
    return bool(np.isfinite(t)) and np.linalg.norm(q - p.center[0]) <= np.linalg.norm(p.size[0]) / 2 + 1e-3


def _brute_force(prims, origin, dirs, max_range):
    """Nearest hit of every ray against every primitive and the ground, no culling."""
    r, n = len(dirs), len(prims)
    t, _, _ = intersect(prims, np.tile(np.arange(n), r), origin, np.repeat(dirs, n, 0))
    t = t.reshape(r, n)
    t[t > max_range] = np.inf
    best = t.min(1)
    hit = np.where(np.isfinite(best), t.argmin(1), MISS)
    with np.errstate(divide='ignore'):
        tg = np.where(dirs[:, 2] < 0, -origin[2] / dirs[:, 2], np.inf)
    tg[tg > max_range] = np.inf
    g = tg < best
    return np.where(g, tg, best), np.where(g, GROUND, hit)


def test_culled_casting_equals_brute_force():
    rng = np.random.default_rng(1)
    prims = _prims(rng, 150, spread=25.0)
    cam = camera_rig((36, 64))[1]
    cam2global = cam['cam2ego'].copy()
    dirs = pixel_rays(cam['intrinsics'], 36, 64) @ cam2global[:3, :3].T
    ref_t, ref_hit = _brute_force(prims, cam2global[:3, 3], dirs, 60.0)
    got = cast_pinhole(prims, cam2global, cam['intrinsics'], 36, 64, dirs, 60.0)
    np.testing.assert_array_equal(got['hit'], ref_hit)
    np.testing.assert_allclose(got['t'], ref_t)
    # generic cone culling (used by the LiDAR): a 360-degree ray fan
    az, el = np.meshgrid(np.linspace(-np.pi, np.pi, 96, endpoint=False), np.radians(np.linspace(-25, 8, 12)),
                         indexing='ij')
    fan = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1).reshape(-1, 3)
    origin = np.array([0.5, -1.0, 1.8])
    ref_t, ref_hit = _brute_force(prims, origin, fan, 40.0)
    got = cast(prims, origin, fan, grid_tiles(96, 12, 4, 4), 40.0)
    np.testing.assert_array_equal(got['hit'], ref_hit)
    np.testing.assert_allclose(got['t'], ref_t)
    assert (ref_hit >= 0).mean() > 0.2 and (ref_hit == GROUND).any()


_PRIO_REF = {c: p for c, p in enumerate([5, 6, 7, 7, 7, 7, 7, 7, 6, 7, 7, 0, 0, 0, 0, 3, 2])}


def test_voxelize_points_matches_loop_reference():
    rng = np.random.default_rng(2)
    grid = OccGrid((-4.0, -4.0, -1.0, 4.0, 4.0, 5.4), 0.8)
    pts = rng.uniform([-5, -5, -1.5, ], [5, 5, 6.0], (3000, 3))          # some fall outside the grid
    cls = rng.integers(0, 17, len(pts)).astype(np.uint8)
    got = voxelize_points(pts, cls, grid)
    ref = np.full(grid.shape, 17, np.uint8)
    best = {}
    for p, c in zip(pts, cls):
        idx = tuple(int(np.floor((p[a] - grid.pc_range[a]) / 0.8)) for a in range(3))
        if any(i < 0 or i >= n for i, n in zip(idx, grid.shape)):
            continue
        key = (_PRIO_REF[int(c)], int(c))                                  # priority, then the higher class
        if idx not in best or key > best[idx]:
            best[idx] = key
    for idx, (_, c) in best.items():
        ref[idx] = c
    np.testing.assert_array_equal(got, ref)
    assert len(best) > 100


def test_fill_vertical_gaps_matches_loop_reference():
    rng = np.random.default_rng(5)
    sem = np.full((6, 7, 16), 17, np.uint8)
    mask = rng.random(sem.shape) < 0.35
    sem[mask] = rng.choice([4, 15, 16], mask.sum())
    got = fill_vertical_gaps(sem, (15, 16), 2)
    ref = sem.copy()
    for i in range(sem.shape[0]):
        for j in range(sem.shape[1]):
            col = sem[i, j]
            occ = [k for k in range(16) if col[k] != 17]
            for a, b in zip(occ[:-1], occ[1:]):                            # consecutive occupied voxels
                if col[a] == col[b] and col[a] in (15, 16) and 1 <= b - a - 1 <= 2:
                    ref[i, j, a + 1:b] = col[a]
    np.testing.assert_array_equal(got, ref)
    assert (got != sem).sum() > 20


def test_exit_distance_matches_marching():
    rng = np.random.default_rng(6)
    prims = _prims(rng, 40, spread=3.0)
    origin = np.array([0.2, -0.1, 1.0])
    pidx = np.arange(40)
    aim = prims.center + rng.uniform(-0.1, 0.1, (40, 3))                  # rays through each solid
    d = (aim - origin) / np.linalg.norm(aim - origin, axis=1, keepdims=True)
    got = exit_distance(prims, pidx, origin, d)
    t = np.arange(0, 30, 1e-3)
    for k in range(40):
        inside = _inside_ref(origin + t[:, None] * d[k], prims.kind[k], prims.center[k], prims.size[k], prims.yaw[k])
        assert inside.any()
        assert got[k] == pytest.approx(t[np.nonzero(inside)[0][-1]], abs=2e-3)


def _march_reference(occ, grid, origin, d):
    """Voxels traversed by one ray up to its first occupied voxel, by 1/50-voxel steps."""
    shape = np.array(occ.shape)
    seen = set()
    step = grid.voxel_size / 50
    for k in range(int(200 / step)):
        p = origin + (k + 0.5) * step * d
        idx = np.floor((p - grid.lower) / grid.voxel_size).astype(int)
        if ((idx < 0) | (idx >= shape)).any():
            if k * step > 1.0:
                return set()                                              # left the grid: no hit
            continue
        seen.add(tuple(idx))
        if occ[tuple(idx)]:
            return seen
    return set()


def test_ray_visibility_matches_fine_marching():
    rng = np.random.default_rng(3)
    grid = OccGrid((-8.0, -8.0, -1.0, 8.0, 8.0, 5.4), 0.8)
    occ = rng.random(grid.shape) < 0.03
    occ[:, :, 1] |= rng.random(grid.shape[:2]) < 0.7                     # a patchy ground layer
    origin = np.array([0.3, -0.2, 1.7])
    d = rng.normal(size=(300, 3))
    d[:, 2] = -np.abs(d[:, 2])
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    ref = np.zeros(grid.shape, bool)
    marched = [_march_reference(occ, grid, origin, d[k]) for k in range(len(d))]
    for seen in marched:
        for idx in seen:
            ref[idx] = True
    got = ray_visibility(occ, grid, origin, d)
    # exact traversal; the 1/50-voxel reference may itself step over a corner a ray barely clips
    assert (got ^ ref).sum() <= 0.01 * ref.sum(), ((got ^ ref).sum(), ref.sum())
    assert ref.sum() > 200
    # rays ending in an ``endpoint_only`` voxel (here: the ground layer) mark only that voxel
    ground = np.zeros(grid.shape, bool)
    ground[:, :, 1] = occ[:, :, 1]
    ref_q = np.zeros(grid.shape, bool)
    for seen in marched:
        hit = [idx for idx in seen if occ[idx]]                            # the one occupied voxel reached
        for idx in (hit if hit and ground[hit[0]] else seen):
            ref_q[idx] = True
    got_q = ray_visibility(occ, grid, origin, d, endpoint_only=ground)
    assert (got_q ^ ref_q).sum() <= 0.01 * ref.sum() + 2, ((got_q ^ ref_q).sum(), ref_q.sum())
    assert ref_q.sum() < 0.8 * ref.sum() and (ref_q & ground).sum() > 20


def test_voxel_visibility_wall_hides_what_is_behind():
    grid = OccGrid((-8.0, -8.0, -1.0, 8.0, 8.0, 5.4), 0.4)
    occ = np.zeros(grid.shape, bool)
    occ[:, :, 2] = True                                                    # the road, z in [-0.2, 0.2)
    wall_i = int((4.0 - grid.lower[0]) / 0.4)
    occ[wall_i, 10:30, 2:12] = True                                        # a 4 m high wall 4 m ahead
    origin = np.array([0.0, -4.0, 1.5])
    cand = np.flatnonzero(occ)
    vis = voxel_visibility(occ, grid, origin, cand)
    ijk = np.stack(np.unravel_index(cand, occ.shape), 1)
    centres = grid.lower + (ijk + 0.5) * 0.4
    road = ijk[:, 2] == 2
    behind = road & (centres[:, 0] > 5.0) & (centres[:, 1] > -3.0) & (centres[:, 1] < 3.0)
    near_road = road & (np.abs(centres[:, 0]) < 3) & (np.abs(centres[:, 1] + 4) < 3)
    assert not vis[behind].any()                        # hidden by the wall
    assert vis[near_road].all()                         # the road around the sensor is seen
    front = (ijk[:, 0] == wall_i) & (ijk[:, 2] < 6) & (np.abs(centres[:, 1] + 4) < 2)
    assert vis[front].all()                             # the wall's face is seen


def _occluders_marched(occ, grid, origin, cand):
    """Reference: occupied voxels a 2 mm march from ``origin`` to each candidate's nearest point
    enters before the last 1.5 voxels (a slow loop, one candidate at a time)."""
    v = grid.voxel_size
    out = []
    for flat in cand:
        ijk = np.array(np.unravel_index(flat, occ.shape))
        vmin = grid.lower + ijk * v
        target = np.clip(origin, vmin + 0.05 * v, vmin + 0.95 * v)
        dist = np.linalg.norm(target - origin)
        entered = set()
        for t in np.arange(0.001, dist - 1.5 * v, 0.002):
            p = origin + (target - origin) / dist * t
            k = tuple(np.clip(np.floor((p - grid.lower) / v).astype(int), 0, np.array(occ.shape) - 1))
            if occ[k]:
                entered.add(k)
        out.append(len(entered))
    return np.array(out)


def test_voxel_visibility_through_occluders_against_a_march():
    """``max_occluders`` = N holds a voxel behind at most N occupied voxels: against a fine march,
    in a scene of scattered blocks."""
    grid = OccGrid((-8.0, -8.0, -1.0, 8.0, 8.0, 5.4), 0.4)
    rng = np.random.default_rng(3)
    occ = np.zeros(grid.shape, bool)
    occ[:, :, 2] = True
    for _ in range(150):
        i, j, k = rng.integers(0, 40), rng.integers(0, 40), rng.integers(3, 10)
        occ[i:i + rng.integers(1, 4), j:j + rng.integers(1, 4), k:k + rng.integers(1, 5)] = True
    origin = np.array([0.1, -0.2, 1.5])
    cand = rng.choice(np.flatnonzero(occ), 300, replace=False)
    ref = _occluders_marched(occ, grid, origin, cand)
    assert (ref == 0).sum() > 20 and (ref >= 3).sum() > 20
    for n in (0, 1, 2, 4):
        got = voxel_visibility(occ, grid, origin, cand, max_occluders=n)
        # Half-voxel samples can step over the corner of a voxel the segment only grazes (so count
        # fewer occluders), never count one it does not cross: a hidden voxel is truly hidden (but
        # for a sample within the march's 2 mm of the segment's end).
        assert (~got & (ref <= n)).sum() <= 0.01 * len(cand), n
        assert (got & (ref > n)).sum() <= 0.12 * len(cand), (n, (got & (ref > n)).sum())
        assert (~got).sum() > 20 or n == 4
    # more occluders allowed never hides a voxel
    assert np.all(voxel_visibility(occ, grid, origin, cand, max_occluders=3)
                  >= voxel_visibility(occ, grid, origin, cand, max_occluders=1))


def test_camera_rig_is_nuscenes_like():
    rig = camera_rig((900, 1600))
    names = [c['name'] for c in rig]
    assert names == ['CAM_FRONT_LEFT', 'CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_BACK_LEFT', 'CAM_BACK', 'CAM_BACK_RIGHT']
    for c in rig:
        r = c['cam2ego'][:3, :3]
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-9)
        assert 1.4 < c['cam2ego'][2, 3] < 1.7
    fwd = {c['name']: c['cam2ego'][:3, 2] for c in rig}                    # optical axis in the ego frame
    np.testing.assert_allclose(fwd['CAM_FRONT'], [1, 0, 0], atol=1e-9)
    np.testing.assert_allclose(fwd['CAM_BACK'], [-1, 0, 0], atol=1e-9)
    assert np.degrees(np.arctan2(fwd['CAM_FRONT_LEFT'][1], fwd['CAM_FRONT_LEFT'][0])) == pytest.approx(55)
    assert rig[1]['intrinsics'][0, 0] == pytest.approx(1266) and rig[4]['intrinsics'][0, 0] == pytest.approx(800)
    small = camera_rig((144, 256))[1]['intrinsics']
    assert small[0, 0] == pytest.approx(1266 * 0.16) and small[0, 2] == pytest.approx(128)
