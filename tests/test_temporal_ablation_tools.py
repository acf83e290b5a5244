"""benchmarks/temporal_ablation.py: pooling seeds (the region metrics are tested in test_eval_regions.py)."""
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'benchmarks'))

from temporal_ablation import combine, combined_table, main  # noqa: E402


def test_combine_pools_seeds_per_config(tmp_path):
    import json

    def row(name, miou, ms):
        return dict(name=name, config=f'configs/ablations/{name}.py', miou=miou, iou=0.5, miou_occluded=miou / 2,
                    recall_occluded=0.9, miou_moving=0.1, ms_per_frame=ms, train_s=100.0)
    a, b = tmp_path / 'a.json', tmp_path / 'b.json'
    a.write_text(json.dumps([row('temporal_t2', 0.20, 150.0), row('temporal_t0', 0.10, 100.0)]))
    b.write_text(json.dumps([row('temporal_t0', 0.14, 110.0), row('temporal_t2', 0.16, 170.0)]))
    rows = combine([str(a), str(b)])
    assert [(r['name'], r['T'], r['n']) for r in rows] == [('temporal_t0', 0, 2), ('temporal_t2', 2, 2)]
    t0, t2 = rows
    assert math.isclose(t0['miou'], 0.12) and math.isclose(t0['miou_spread'], 0.04)
    assert math.isclose(t2['ms_per_frame'], 160.0) and math.isclose(t2['ms_per_frame_spread'], 20.0)
    md = combined_table(rows)
    assert '| temporal_t0 | 0 | 2 | 12.00 ± 2.00 |' in md
    assert main(['--combine', str(a), str(b), '--work-root', str(tmp_path / 'out')]) == 0
    assert (tmp_path / 'out' / 'temporal_combined.png').read_bytes()[:4] == b'\x89PNG'
    b.write_text(json.dumps([dict(name='temporal_t0', config='x', error='training exit 1')]))
    try:
        combine([str(a), str(b)])
    except ValueError as e:
        assert 'b.json' in str(e) and 'temporal_t0' in str(e)
    else:
        raise AssertionError('a failed run must not be averaged silently')
