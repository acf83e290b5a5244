"""occ.models.groups: only the valid rows of a [B, K, ...] group are encoded, against a per-row loop."""
import torch

from occ.models.groups import encode_valid_rows


def test_encode_valid_rows_matches_a_loop_and_skips_invalid_rows():
    g = torch.Generator().manual_seed(0)
    group = {'imgs': torch.randn(3, 4, 2, 5, generator=g), 'pose': torch.randn(3, 4, 4, 4, generator=g),
             'agent_id': torch.arange(12).view(3, 4), 'valid': torch.rand(3, 4, generator=g) > 0.4,
             'not_a_row': torch.zeros(7, 2)}
    seen = []

    def encode(flat):
        seen.append(sorted(flat))
        assert flat['imgs'].shape[0] == int(group['valid'].sum())
        return {'bev': flat['imgs'].sum(-1) * 2 + flat['pose'][:, :2, 0] + flat['agent_id'][:, None]}

    out = encode_valid_rows(group, group['valid'], encode)
    assert seen == [['agent_id', 'imgs', 'pose']]            # 'valid' and non-[B, K] entries are not rows
    for b in range(3):
        for k in range(4):
            want = (group['imgs'][b, k].sum(-1) * 2 + group['pose'][b, k, :2, 0] + group['agent_id'][b, k]
                    if group['valid'][b, k] else torch.zeros(2))
            torch.testing.assert_close(out[b, k], want)


def test_no_valid_row_encodes_nothing():
    group = {'imgs': torch.ones(2, 3, 4)}
    valid = torch.zeros(2, 3, dtype=torch.bool)

    def never(flat):
        raise AssertionError('nothing to encode')

    assert encode_valid_rows(group, valid, never) is None
    like = torch.ones(5, 6, 7, dtype=torch.float64)
    out = encode_valid_rows(group, valid, never, like=like)
    assert out.shape == (2, 3, 6, 7) and out.dtype == torch.float64 and not out.any()
