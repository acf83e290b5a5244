"""configs/_base_/models/cross_attn_dense.py builds an OccNet that trains and predicts on CPU."""
import pytest

from test_sparse_head_config import check_config_trains_and_predicts


@pytest.mark.slow
@pytest.mark.filterwarnings('ignore::UserWarning')
def test_cross_attn_dense_config():
    model = check_config_trains_and_predicts('configs/_base_/models/cross_attn_dense.py',
                                             {'loss_weighted_ce'})
    assert type(model.view_transform).__name__ == 'CrossAttentionBEV'
    assert all(p.grad is not None for p in model.view_transform.parameters())
